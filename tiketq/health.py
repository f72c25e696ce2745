"""Blueprint: health checks for the people and machines that run the service."""

from __future__ import annotations

from typing import Literal, cast

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, Response, current_app, jsonify
from flask_migrate import Migrate
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from tiketq.extensions import db
from tiketq.openapi import Operation

bp = Blueprint("health", __name__)


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]
    service: str


class Migrations(BaseModel):
    """The schema revision the database is at, and the one the code expects."""

    current: list[str] = Field(default_factory=list)
    head: list[str]


class Readiness(BaseModel):
    """Readiness: whether the database answers and is migrated."""

    status: Literal["ok", "unavailable"]
    database: str
    migrations: Migrations | None = None


@bp.get("/health")
@Operation(
    operation_id="health",
    tag="health",
    success=(200, Health, "Alive"),
)
def health() -> Response:
    """Liveness: the process answers; touches nothing else."""
    return jsonify(status="ok", service=current_app.config["SERVICE_NAME"])


@bp.get("/health/ready")
@Operation(
    operation_id="ready",
    tag="health",
    success=(200, Readiness, "Ready"),
    refusals=((503, Readiness, "Not ready"),),
)
def ready() -> tuple[Response, int]:
    """Readiness: the database answers and its schema is at the migrations' head."""
    migrate: Migrate = current_app.extensions["migrate"].migrate
    # Flask-Migrate's Config is alembic's at runtime; its stubs cannot say so yet.
    config = cast(Config, migrate.get_config())
    heads = set(ScriptDirectory.from_config(config).get_heads())
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
