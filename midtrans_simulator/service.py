"""The simulator object an app carries, and the single path every state change takes."""

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from flask import current_app

from . import lifecycle, payloads, wallet
from .methods import METHODS, offered_methods
from .notifier import Notifier
from .outbox import Delivery
from .store import Store, Transaction, Updated
from .wire import utc_now

EXTENSION_KEY = "tiketq.simulator"
R = TypeVar("R")


class UnknownChoice(ValueError):
    """A payment method or outcome the simulator does not know."""


@dataclass(frozen=True)
class Simulator:
    """Configuration and state of one simulated Midtrans merchant account."""

    server_key: str
    store: Store
    notifier: Notifier
    merchant_id: str = "G141532850"

    def record_change(
        self, key: str, step: Callable[[Transaction], R], *, by: Literal["id", "token"] = "id"
    ) -> Updated[R] | None:
        """Apply `step` to a stored transaction atomically; every status change goes through here.

        The notifications a change causes are queued in the same database transaction.
        Issuing a Snap token is not routed here: it creates no Core API transaction and Midtrans
        reports nothing about it.
        """
        updated = self.store.update(key, step, by=by, on_change=self._queue_notifications)
        if updated is not None:
            self.notifier.wake()
        return updated

    def pay(
        self,
        key: str,
        method_code: str,
        outcome: str,
        *,
        by: Literal["id", "token"] = "id",
        customer_fee: int | None = None,
    ) -> Updated[None] | None:
        """Simulate the traveller paying in Snap; None if the transaction is unknown.

        `customer_fee` imitates Automatic Fee Imposition: the fee the method adds to what is
        paid. None keeps the fee set by an earlier payment step.
        """
        method = METHODS.get(method_code)
        if method is None:
            raise UnknownChoice(f"unknown payment method: {method_code}")
        if outcome not in lifecycle.OUTCOMES:
            raise UnknownChoice(f"unknown outcome: {outcome}")

        def step(txn: Transaction) -> None:
            if method not in offered_methods(txn.request):
                raise lifecycle.IllegalMove(f"{method_code} is not enabled for this transaction")
            lifecycle.choose_method(txn, method, outcome, utc_now())
            if customer_fee is not None:
                txn.customer_fee = customer_fee

        return self.record_change(key, step, by=by)

    def notify_again(self, key: str) -> list[Delivery] | None:
        """Queue the notification of a transaction's current state once more; None if unknown."""
        txn = self.store.get(key)
        if txn is None:
            return None
        if not txn.in_core:
            raise lifecycle.IllegalMove("no payment method has been chosen yet")
        with self.store.write() as conn:
            deliveries = self.notifier.enqueue(conn, txn, [self.notification_body(txn)])
        self.notifier.wake()
        return deliveries

    def status_body(self, txn: Transaction) -> dict[str, Any]:
        """Return the Core API Get Status body for `txn`, answering a request to this simulator.

        A pending wallet payment's actions name this simulator's addresses, as seen by the caller.
        """
        body = payloads.status_body(txn, server_key=self.server_key, merchant_id=self.merchant_id)
        return {**body, **wallet.answer_fields(txn)}

    def _queue_notifications(
        self, conn: sqlite3.Connection, before: Transaction, after: Transaction
    ) -> None:
        if not after.in_core or _reported_state(before) == _reported_state(after):
            return
        if len(after.refunds) > len(before.refunds):
            # Midtrans notifies a refund when it is granted and again when the bank confirms it.
            bodies = [
                self.notification_body(after, bank_confirmed=False),
                self.notification_body(after),
            ]
        else:
            bodies = [self.notification_body(after)]
        self.notifier.enqueue(conn, after, bodies)

    def notification_body(self, txn: Transaction, *, bank_confirmed: bool = True) -> dict[str, Any]:
        """Return the signed HTTP notification body about `txn` as it stands."""
        return payloads.notification_body(
            txn,
            server_key=self.server_key,
            merchant_id=self.merchant_id,
            bank_confirmed=bank_confirmed,
        )


def _reported_state(txn: Transaction) -> tuple[Any, ...]:
    """What a notification reports; picking another method, for one, replaces the payment."""
    return (txn.transaction_status, txn.fraud_status, txn.payment_method, len(txn.refunds))


def current_simulator() -> Simulator:
    """Return the simulator of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]
