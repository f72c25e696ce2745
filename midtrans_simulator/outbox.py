"""The notification outbox: deliveries and test modes, kept in the simulator's SQLite file.

Rows are claimed under the write lock with a lease, so each attempt is made by exactly one
thread of one process, and a process that dies mid-attempt only delays its delivery.
"""

import json
import sqlite3
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from .delivery import Attempt
from .store import Store

Status = Literal["held", "pending", "delivered", "gave_up", "no_url"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    url TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    claimed_until REAL,
    claim_token TEXT,
    history TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_order ON deliveries (order_id);
CREATE TABLE IF NOT EXISTS notification_mode (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    duplicates INTEGER NOT NULL,
    reverse INTEGER NOT NULL,
    hold INTEGER NOT NULL
);
"""
_COLUMNS = "id, order_id, url, body, status, attempts, next_attempt_at, created_at, history"


@dataclass(frozen=True)
class Mode:
    """Test modes that bend delivery: extra copies, newest first, or holding until released."""

    duplicates: int = 0
    reverse: bool = False
    hold: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the mode as the control API shows it."""
        return {"duplicates": self.duplicates, "reverse": self.reverse, "hold": self.hold}


@dataclass(frozen=True)
class Delivery:
    """One notification body on its way to one URL."""

    id: int
    order_id: str
    url: str | None
    body: str
    status: Status
    attempts: int
    next_attempt_at: float | None
    created_at: float
    history: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """Return the delivery as the control API shows it, with the body decoded."""
        return {
            "id": self.id,
            "order_id": self.order_id,
            "url": self.url,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "created_at": _iso(self.created_at),
            "history": self.history,
            "body": json.loads(self.body),
        }


@dataclass(frozen=True)
class Claim:
    """The right, held until `claimed_until`, to make a delivery's next attempt."""

    delivery_id: int
    token: str
    url: str
    body: str
    attempts_made: int


class Outbox:
    """Queued notifications and the delivery mode, shared by every process on the state file."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.connection() as conn:
            conn.executescript(_SCHEMA)

    def add(
        self, conn: sqlite3.Connection, order_id: str, urls: list[str], body: str, *, now: float
    ) -> list[Delivery]:
        """Queue `body` for each URL within the caller's write transaction, honouring the mode.

        Without any URL the notification is recorded as `no_url` and never sent.
        """
        mode = _select_mode(conn)
        if not urls:
            return [_insert(conn, order_id, None, body, "no_url", None, now)]
        status: Status = "held" if mode.hold else "pending"
        due = None if mode.hold else now
        return [
            _insert(conn, order_id, url, body, status, due, now)
            for url in urls
            for _ in range(1 + mode.duplicates)
        ]

    def claim(self, *, now: float, lease: float) -> Claim | None:
        """Take the next due delivery for one attempt, or None if nothing is due."""
        due = self.next_due()
        if due is None or due > now:
            return None  # keeps idle polling off the write lock
        with self.store.write() as conn:
            order = "id DESC" if _select_mode(conn).reverse else "next_attempt_at, id"
            row = conn.execute(
                "SELECT id, url, body, attempts FROM deliveries"
                " WHERE status = 'pending' AND next_attempt_at <= ?"
                " AND (claimed_until IS NULL OR claimed_until <= ?)"
                f" ORDER BY {order} LIMIT 1",
                (now, now),
            ).fetchone()
            if row is None:
                return None
            token = uuid.uuid4().hex
            conn.execute(
                "UPDATE deliveries SET claimed_until = ?, claim_token = ? WHERE id = ?",
                (now + lease, token, row[0]),
            )
            return Claim(row[0], token, row[1], row[2], row[3])

    def finish(
        self, claim: Claim, attempt: Attempt, *, status: Status, next_attempt_at: float | None
    ) -> None:
        """Record a claimed attempt and what happens next; ignored if the lease was lost."""
        with self.store.write() as conn:
            row = conn.execute(
                "SELECT history FROM deliveries WHERE id = ? AND claim_token = ?",
                (claim.delivery_id, claim.token),
            ).fetchone()
            if row is None:
                return
            history = [*json.loads(row[0]), attempt.to_json()]
            conn.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?,"
                " history = ?, claimed_until = NULL, claim_token = NULL WHERE id = ?",
                (
                    status,
                    claim.attempts_made + 1,
                    next_attempt_at,
                    json.dumps(history),
                    claim.delivery_id,
                ),
            )

    def release(self, *, now: float) -> list[Delivery]:
        """Make every held delivery due now and return them."""
        with self.store.write() as conn:
            held = _select(conn, "status = 'held'", ())
            conn.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?"
                " WHERE status = 'held'",
                (now,),
            )
        return [replace(delivery, status="pending", next_attempt_at=now) for delivery in held]

    def deliveries(self, order_id: str | None = None) -> list[Delivery]:
        """List deliveries, oldest first, optionally for one order."""
        with self.store.connection() as conn:
            if order_id is None:
                return _select(conn, "1", ())
            return _select(conn, "order_id = ?", (order_id,))

    def busy(self, *, due_before: float, order_id: str | None = None) -> bool:
        """Whether a pending delivery (optionally of one order) falls due before `due_before`."""
        query = "SELECT 1 FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
        params: tuple[Any, ...] = (due_before,)
        if order_id is not None:
            query += " AND order_id = ?"
            params += (order_id,)
        with self.store.connection() as conn:
            return conn.execute(query + " LIMIT 1", params).fetchone() is not None

    def next_due(self) -> float | None:
        """Return when the next pending delivery may be attempted, leases included."""
        with self.store.connection() as conn:
            (due,) = conn.execute(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(claimed_until, 0)))"
                " FROM deliveries WHERE status = 'pending'"
            ).fetchone()
            return due

    def mode(self) -> Mode:
        """Return the active delivery mode."""
        with self.store.connection() as conn:
            return _select_mode(conn)

    def set_mode(self, mode: Mode) -> None:
        """Replace the delivery mode; deliveries already held stay held until released."""
        with self.store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO notification_mode (id, duplicates, reverse, hold)"
                " VALUES (1, ?, ?, ?)",
                (mode.duplicates, mode.reverse, mode.hold),
            )


def _insert(
    conn: sqlite3.Connection,
    order_id: str,
    url: str | None,
    body: str,
    status: Status,
    due: float | None,
    now: float,
) -> Delivery:
    cursor = conn.execute(
        "INSERT INTO deliveries (order_id, url, body, status, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (order_id, url, body, status, due, now),
    )
    assert cursor.lastrowid is not None
    return Delivery(cursor.lastrowid, order_id, url, body, status, 0, due, now, [])


def _select(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[Delivery]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE {where} ORDER BY id", params)
    return [Delivery(*row[:-1], history=json.loads(row[-1])) for row in rows]


def _select_mode(conn: sqlite3.Connection) -> Mode:
    row = conn.execute("SELECT duplicates, reverse, hold FROM notification_mode").fetchone()
    if row is None:
        return Mode()
    duplicates, reverse, hold = row
    return Mode(duplicates, bool(reverse), bool(hold))


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()
