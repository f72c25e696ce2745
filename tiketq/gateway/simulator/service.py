"""The simulator object an app carries, and the single path every state change takes."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from flask import current_app

from . import lifecycle, payloads
from .methods import METHODS, offered_methods
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
    merchant_id: str = "G141532850"

    def record_change(
        self, key: str, step: Callable[[Transaction], R], *, by: Literal["id", "token"] = "id"
    ) -> Updated[R] | None:
        """Apply `step` to a stored transaction atomically; every status change goes through here.

        Issuing a Snap token is not routed here: it creates no Core API transaction and Midtrans
        reports nothing about it.
        """
        return self.store.update(key, step, by=by)

    def pay(
        self, key: str, method_code: str, outcome: str, *, by: Literal["id", "token"] = "id"
    ) -> Updated[None] | None:
        """Simulate the traveller paying in Snap; None if the transaction is unknown."""
        method = METHODS.get(method_code)
        if method is None:
            raise UnknownChoice(f"unknown payment method: {method_code}")
        if outcome not in lifecycle.OUTCOMES:
            raise UnknownChoice(f"unknown outcome: {outcome}")

        def step(txn: Transaction) -> None:
            if method not in offered_methods(txn.request):
                raise lifecycle.IllegalMove(f"{method_code} is not enabled for this transaction")
            lifecycle.choose_method(txn, method, outcome, utc_now())

        return self.record_change(key, step, by=by)

    def status_body(self, txn: Transaction) -> dict[str, Any]:
        """Return the Core API Get Status body for `txn`."""
        return payloads.status_body(txn, server_key=self.server_key, merchant_id=self.merchant_id)


def current_simulator() -> Simulator:
    """Return the simulator of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]
