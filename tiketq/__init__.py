"""TiketQ Payments: takes money for TiketQ orders through Midtrans."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config -> extensions -> gateway -> blueprints -> error handlers."""
    from tiketq import (
        api,
        auth,
        checkout,
        config,
        docs,
        errors,
        gateway,
        health,
        logs,
        metrics,
        ops,
        outbound,
        security,
        webhooks,
        worker,
    )
    from tiketq.extensions import db, migrate, ping_when_hung_up, release_session
    from tiketq.payments.status import StatusDetail
    from tiketq.sessions import PageSessionInterface

    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(config.from_environ(os.environ, app.instance_path))
    if test_config is not None:
        app.config.update(test_config)
    config.validate(app.config)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = config.instance_secret_key(app.instance_path)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:"):
        os.makedirs(app.instance_path, exist_ok=True)

    logs.init_app(app)
    metrics.init_app(app)
    db.init_app(app)
    ping_when_hung_up(app)
    app.teardown_appcontext(release_session)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    gateway.init_app(app)
    outbound.init_app(app)
    auth.init_app(app)
    for blueprint in (api.bp, webhooks.bp, health.bp, docs.bp, checkout.bp):
        app.register_blueprint(blueprint)
    ops.init_app(app)
    # Pages name details as the code does, so a renamed one cannot silently stop matching.
    app.jinja_env.globals["StatusDetail"] = StatusDetail
    api_prefix = api.bp.url_prefix
    assert api_prefix is not None  # the blueprint is made with one; Flask types it optional
    app.session_interface = PageSessionInterface([api_prefix, "/webhook/"])
    security.init_app(app)
    errors.init_app(app)
    app.cli.add_command(worker.cli)
    hops = app.config["PROXY_FIX_HOPS"]
    if hops:
        # Outermost, so that everything inside sees the traveller's address and scheme. Not the
        # host, port or prefix: our addresses come from PUBLIC_BASE_URL, whatever a header says.
        # Flask's documented way to add WSGI middleware, which mypy takes for patching a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops
        )
    return app
