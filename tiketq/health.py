"""Blueprint: health checks for the people and machines that run the service."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, Response, current_app, jsonify
from flask_migrate import Migrate
from sqlalchemy.exc import SQLAlchemyError

from tiketq.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    """Liveness: the process answers; touches nothing else."""
    return jsonify(status="ok", service=current_app.config["SERVICE_NAME"])


@bp.get("/health/ready")
def ready() -> tuple[Response, int]:
    """Readiness: the database answers and its schema is at the migrations' head."""
    migrate: Migrate = current_app.extensions["migrate"].migrate
    heads = set(ScriptDirectory.from_config(migrate.get_config()).get_heads())
    try:
        current = set(MigrationContext.configure(db.session.connection()).get_current_heads())
    except SQLAlchemyError as exc:
        return jsonify(status="unavailable", database=f"unreachable ({type(exc).__name__})"), 503
    if current != heads:
        return jsonify(
            status="unavailable",
            database="reachable",
            migrations={"current": sorted(current), "head": sorted(heads)},
        ), 503
    return jsonify(status="ok", database="reachable", migrations={"head": sorted(heads)}), 200
