"""SQLite-backed state shared by every process and thread serving the simulator."""

import copy
import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from .wire import utc_now

R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    order_id TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fault (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    delay_seconds REAL NOT NULL,
    status INTEGER,
    body TEXT,
    times INTEGER,
    operations TEXT
);
CREATE TABLE IF NOT EXISTS calls (
    operation TEXT NOT NULL,
    key TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (operation, key)
) WITHOUT ROWID;
"""
# Columns added after the first release; a state file written by an older simulator lacks them.
_ADDED_COLUMNS = {"fault": {"operations": "TEXT"}}


@dataclass
class Refund:
    """One refund granted on a transaction."""

    refund_chargeback_id: int
    amount: int
    refund_key: str
    reason: str | None
    method: Literal["online", "direct"]
    created_at: datetime


@dataclass
class Transaction:
    """A Snap order and, once the traveller picks a method, its Core API transaction."""

    order_id: str
    token: str
    transaction_id: str
    gross_amount: int
    request: dict[str, Any]
    created_at: datetime
    expiry_time: datetime
    page_expiry_time: datetime
    updated_at: datetime
    snap_canceled_at: datetime | None = None
    payment_method: str | None = None
    payment_type: str | None = None
    method_fields: dict[str, Any] = field(default_factory=dict)
    transaction_status: str | None = None
    fraud_status: str | None = None
    transaction_time: datetime | None = None
    settlement_time: datetime | None = None
    refunds: list[Refund] = field(default_factory=list)
    customer_fee: int = 0
    override_notification_urls: list[str] = field(default_factory=list)
    append_notification_urls: list[str] = field(default_factory=list)

    @property
    def in_core(self) -> bool:
        """Whether Core API sees this order; Snap creates it only when a method is chosen."""
        return self.transaction_status is not None

    @property
    def charged_amount(self) -> int:
        """What the traveller pays: the order amount plus any fee imposed on the method."""
        return self.gross_amount + self.customer_fee

    @property
    def refunded_amount(self) -> int:
        """Total refunded so far."""
        return sum(refund.amount for refund in self.refunds)

    def find_refund(self, refund_key: str) -> Refund | None:
        """Return the refund made under `refund_key`, if any."""
        return next((refund for refund in self.refunds if refund.refund_key == refund_key), None)

    def to_json(self) -> dict[str, Any]:
        """Return the full internal state as JSON-ready data."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Transaction":
        """Rebuild a transaction from `to_json` output."""
        values = _parse_times(data, _TRANSACTION_TIMES)
        values["refunds"] = [
            Refund(**_parse_times(item, {"created_at"})) for item in data["refunds"]
        ]
        return cls(**values)


_TRANSACTION_TIMES = {
    "created_at",
    "expiry_time",
    "page_expiry_time",
    "updated_at",
    "snap_canceled_at",
    "transaction_time",
    "settlement_time",
}


@dataclass(frozen=True)
class Fault:
    """An injected misbehaviour for Snap and Core routes; `operations` None means all of them."""

    delay_seconds: float = 0.0
    status: int | None = None
    body: str | None = None
    times: int | None = None
    operations: tuple[str, ...] | None = None

    def hits(self, operation: str) -> bool:
        """Whether this fault applies to `operation`."""
        return self.operations is None or operation in self.operations


@dataclass(frozen=True)
class CallCount:
    """How many times the simulator answered one operation about one id."""

    operation: str
    key: str
    count: int


@dataclass(frozen=True)
class Updated(Generic[R]):
    """Outcome of a read-modify-write: the transaction as stored and the step's result."""

    transaction: Transaction
    result: R


OnChange = Callable[[sqlite3.Connection, Transaction, Transaction], None]


class DuplicateOrderId(Exception):
    """The order_id already received a Snap token."""


class Store:
    """Transactions, the active fault and call counts, kept in one SQLite file others may share."""

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with self.connection() as conn:
            # WAL lets readers in other workers proceed while one writer holds the lock.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        with self.write() as conn:
            # Under the write lock, so two workers opening one old file do not both add a column.
            _add_missing_columns(conn)

    def add(self, txn: Transaction) -> None:
        """Insert a new transaction; raise DuplicateOrderId if its order_id is taken."""
        try:
            with self.write() as conn:
                conn.execute(
                    "INSERT INTO transactions (order_id, transaction_id, token, created_at, state)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        txn.order_id,
                        txn.transaction_id,
                        txn.token,
                        txn.created_at.isoformat(),
                        _dump(txn),
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateOrderId(txn.order_id) from exc

    def get(self, key: str, *, by: Literal["id", "token"] = "id") -> Transaction | None:
        """Find a transaction by order_id or transaction_id (`by="id"`), or by Snap token."""
        with self.connection() as conn:
            return _select(conn, key, by)

    def all(self) -> list[Transaction]:
        """Return every transaction, newest first."""
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT state FROM transactions ORDER BY created_at DESC, rowid DESC"
            )
            return [_load(state) for (state,) in rows]

    def update(
        self,
        key: str,
        step: Callable[[Transaction], R],
        *,
        by: Literal["id", "token"] = "id",
        on_change: OnChange | None = None,
    ) -> Updated[R] | None:
        """Run `step` on a transaction under the write lock, saving it if changed; None if unknown.

        `on_change(conn, before, after)` runs in the same database transaction when the step
        changed something. An exception from either rolls the whole read-modify-write back.
        """
        with self.write() as conn:
            txn = _select(conn, key, by)
            if txn is None:
                return None
            before = copy.deepcopy(txn)
            result = step(txn)
            # A replayed refund_key, for one, changes nothing and must not look like a change.
            if txn != before:
                txn.updated_at = utc_now()
                conn.execute(
                    "UPDATE transactions SET state = ? WHERE order_id = ?",
                    (_dump(txn), txn.order_id),
                )
                if on_change is not None:
                    on_change(conn, before, txn)
            return Updated(txn, result)

    def set_fault(self, fault: Fault) -> None:
        """Activate `fault`, replacing any active one."""
        operations = None if fault.operations is None else json.dumps(list(fault.operations))
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO fault (id, delay_seconds, status, body, times, operations)"
                " VALUES (1, ?, ?, ?, ?, ?)",
                (fault.delay_seconds, fault.status, fault.body, fault.times, operations),
            )

    def clear_fault(self) -> None:
        """Deactivate any fault."""
        with self.write() as conn:
            conn.execute("DELETE FROM fault")

    def current_fault(self) -> Fault | None:
        """Return the active fault without consuming it."""
        with self.connection() as conn:
            return _select_fault(conn)

    def take_fault(self, operation: str) -> Fault | None:
        """Return the fault hitting one request for `operation`, counting it against `times`."""
        fault = self.current_fault()
        if fault is None or not fault.hits(operation):
            return None  # the common case stays lock-free
        with self.write() as conn:
            fault = _select_fault(conn)
            if fault is None or not fault.hits(operation):
                return None
            if fault.times is None:
                return fault
            if fault.times <= 1:
                conn.execute("DELETE FROM fault")
            else:
                conn.execute("UPDATE fault SET times = times - 1")
            return fault

    def count_call(self, operation: str, key: str) -> None:
        """Count one answered call of `operation` about `key`."""
        with self.connection() as conn:
            # One autocommitted statement: the write lock is held only for the increment.
            conn.execute(
                "INSERT INTO calls (operation, key, count) VALUES (?, ?, 1)"
                " ON CONFLICT (operation, key) DO UPDATE SET count = count + 1",
                (operation, key),
            )

    def calls(self, *, operation: str | None = None, key: str | None = None) -> list[CallCount]:
        """Return the call counts, by operation then key, optionally filtered."""
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT operation, key, count FROM calls"
                " WHERE (?1 IS NULL OR operation = ?1) AND (?2 IS NULL OR key = ?2)"
                " ORDER BY operation, key",
                (operation, key),
            )
            return [CallCount(*row) for row in rows]

    def reset_calls(self) -> None:
        """Forget every call counted so far."""
        with self.write() as conn:
            conn.execute("DELETE FROM calls")

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """Open a connection in autocommit mode for one operation."""
        # A connection per operation keeps threads and forked workers from sharing handles.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """Open a connection holding the write lock; commit on exit, roll back on error."""
        with self.connection() as conn:
            # IMMEDIATE takes the write lock up front, so concurrent read-modify-writes serialise.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _select(conn: sqlite3.Connection, key: str, by: Literal["id", "token"]) -> Transaction | None:
    if by == "token":
        row = conn.execute("SELECT state FROM transactions WHERE token = ?", (key,)).fetchone()
    else:
        row = conn.execute(
            "SELECT state FROM transactions WHERE order_id = ? OR transaction_id = ?", (key, key)
        ).fetchone()
    return None if row is None else _load(row[0])


def _select_fault(conn: sqlite3.Connection) -> Fault | None:
    row = conn.execute(
        "SELECT delay_seconds, status, body, times, operations FROM fault"
    ).fetchone()
    if row is None:
        return None
    delay_seconds, status, body, times, operations = row
    return Fault(
        delay_seconds=delay_seconds,
        status=status,
        body=body,
        times=times,
        operations=None if operations is None else tuple(json.loads(operations)),
    )


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _dump(txn: Transaction) -> str:
    return json.dumps(txn.to_json())


def _load(state: str) -> Transaction:
    return Transaction.from_json(json.loads(state))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def _parse_times(data: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {
        key: datetime.fromisoformat(value) if key in names and value is not None else value
        for key, value in data.items()
    }
