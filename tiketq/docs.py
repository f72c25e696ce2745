"""Blueprint: the OpenAPI document at /openapi.json and Swagger UI at /docs, without a CDN."""

from __future__ import annotations

from importlib.resources import files

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    send_from_directory,
)

from tiketq import openapi

bp = Blueprint("docs", __name__, static_folder="static/docs", static_url_path="/docs/static")

# Swagger UI as the flask-swagger-ui wheel ships it: no npm step, nothing vendored in git.
SWAGGER_UI_DIST = str(files("flask_swagger_ui") / "dist")


@bp.before_request
def _only_when_enabled() -> None:
    if not current_app.config["DOCS_ENABLED"]:
        abort(404)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 document of the API, as this deployment guards it."""
    config = current_app.config
    return jsonify(
        openapi.document(
            callers_need_keys=config["API_AUTH_REQUIRED"],
            anonymous_create=config["API_ALLOW_ANONYMOUS_CREATE"],
        )
    )


@bp.get("/docs")
def swagger_ui() -> str:
    """Swagger UI for the OpenAPI document; scripts and styles come from this service only."""
    return render_template("docs/index.html")


@bp.get("/docs/swagger-ui/<path:filename>")
def swagger_ui_asset(filename: str) -> Response:
    """One file of the Swagger UI distribution."""
    return send_from_directory(SWAGGER_UI_DIST, filename)
