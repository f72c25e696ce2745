"""A client of the Midtrans simulator running as its own HTTP server, through its control API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class Simulator:
    """The Midtrans simulator running as its own HTTP server, with its control API."""

    url: str
    # Whether a fault may be set, so that tests which set none skip the call that clears it.
    faulted: bool = field(default=False, compare=False)

    def control(self, method: str, path: str, json: Any = None) -> requests.Response:
        """Call the simulator's control API."""
        return requests.request(method, f"{self.url}/control{path}", json=json, timeout=5)

    def fault(
        self,
        *,
        delay_seconds: float = 0,
        status: int | None = None,
        body: str | None = None,
        times: int | None = None,
        operations: list[str] | None = None,
    ) -> None:
        """Make Snap and Core misbehave; `operations` (e.g. ["core.status"]) aims at those only."""
        fault = {
            "delay_seconds": delay_seconds,
            "status": status,
            "body": body,
            "times": times,
            "operations": operations,
        }
        self.faulted = True
        self.control("POST", "/faults", fault).raise_for_status()

    def clear_faults(self) -> None:
        """Let Snap and Core answer normally again."""
        self.control("DELETE", "/faults").raise_for_status()
        self.faulted = False

    def calls(self, operation: str | None = None, key: str | None = None) -> int:
        """How many Snap/Core calls the simulator answered, e.g. ("core.status", order_id)."""
        filters = {
            name: value
            for name, value in (("operation", operation), ("key", key))
            if value is not None
        }
        response = requests.get(f"{self.url}/control/calls", params=filters, timeout=5)
        response.raise_for_status()
        return response.json()["total"]

    def reset_calls(self) -> None:
        """Count Snap/Core calls from zero again."""
        self.control("DELETE", "/calls").raise_for_status()

    def notification(self, order_id: str) -> dict[str, Any]:
        """The signed HTTP notification Midtrans would send now about the order."""
        response = self.control("GET", f"/transactions/{order_id}/notification")
        response.raise_for_status()
        return response.json()

    def pay(self, order_id: str, method: str, outcome: str) -> dict[str, Any]:
        """Act as the traveller choosing a method in Snap, with an outcome."""
        response = self.control(
            "POST", f"/transactions/{order_id}/pay", {"method": method, "outcome": outcome}
        )
        response.raise_for_status()
        return response.json()

    def transaction(self, order_id: str) -> dict[str, Any]:
        """The simulator's record of a transaction."""
        response = self.control("GET", f"/transactions/{order_id}")
        response.raise_for_status()
        return response.json()

    def refunded(self, order_id: str) -> int:
        """How much of the transaction the simulator holds as refunded."""
        return sum(refund["amount"] for refund in self.transaction(order_id)["refunds"])
