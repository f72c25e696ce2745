"""The same four endpoints shaped as the original service was: FastAPI, sync SQLAlchemy sessions.

Plain `def` endpoints run in FastAPI's thread pool, each with its own Session from a dependency,
on an engine with SQLAlchemy's default pool. Serve it from the project root with
`uvicorn benchmarks.baselines.fastapi_app:app --workers 2`. Reads the same variables as
`flask_app.py`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import TextClause, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.baselines import work
from benchmarks.baselines.statements import SEARCH_PATH

engine = create_engine(os.environ["DATABASE_URL"], connect_args={"options": SEARCH_PATH})
make_session = sessionmaker(bind=engine)
app = FastAPI()


class PaymentRequest(BaseModel):
    """The create body, validated as the original's PaymentRequest was."""

    order_id: str = Field(min_length=1, max_length=50)
    amount: float = Field(gt=0)
    payment_method: str | None = None
    customer_details: dict[str, Any] = {}
    item_details: list[dict[str, Any]] = []
    description: str | None = None
    expiry_duration: int = Field(default=1, ge=1, le=168)


class SessionDatabase:
    """work.Database over one SQLAlchemy Session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def row(self, statement: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """Run a statement; its first row as a dict, if it returns rows."""
        result = self.session.execute(_clause(statement), params)
        if not result.returns_rows:
            return None
        found = result.mappings().first()
        return None if found is None else dict(found)

    def commit(self) -> None:
        """Commit the transaction."""
        self.session.commit()

    def rollback(self) -> None:
        """Roll the transaction back."""
        self.session.rollback()


@functools.cache
def _clause(statement: str) -> TextClause:
    return text(statement)


def database() -> Iterator[SessionDatabase]:
    """A Session for one request, closed (and rolled back) after it."""
    with make_session() as session:
        yield SessionDatabase(session)


async def raw_body(request: Request) -> bytes:
    """The request body as received: the notification is stored verbatim."""
    return await request.body()


Db = Annotated[SessionDatabase, Depends(database)]


def _answer(answer: work.Answer) -> JSONResponse:
    status, body = answer
    return JSONResponse(body, status_code=status)


@app.get("/health")
def health() -> dict[str, str]:
    """Liveness, for the benchmark to wait on."""
    return {"status": "ok"}


@app.post("/payments")
def create_payment(payload: PaymentRequest, db: Db) -> JSONResponse:
    """Open a payment and get its Snap token."""
    return _answer(work.create(db, payload.model_dump()))


@app.get("/payments/{payment_id}")
def get_payment(payment_id: str, db: Db) -> JSONResponse:
    """Read one payment."""
    return _answer(work.read(db, payment_id))


@app.get("/payments/{payment_id}/status")
def get_status(payment_id: str, db: Db) -> JSONResponse:
    """Read one payment's status, refreshed from Midtrans at most every few seconds."""
    return _answer(work.status(db, payment_id))


@app.post("/payments/webhook")
def notification(raw: Annotated[bytes, Depends(raw_body)], db: Db) -> JSONResponse:
    """Store a Midtrans notification, ask Midtrans about the order and apply its answer."""
    return _answer(work.webhook(db, raw))
