"""Payment statuses and the transitions allowed between them; pure Python."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PaymentStatus(StrEnum):
    """The public status vocabulary that callers already know."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REFUNDED = "refunded"


_UNPAID_ENDS = frozenset({PaymentStatus.FAILED, PaymentStatus.CANCELED, PaymentStatus.EXPIRED})

# Monotonic: nothing ever returns to pending, and cancel and expiry are final. Money that
# arrives after them is not a transition but a flag for review (see status_detail).
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.PROCESSING, PaymentStatus.SUCCESS, *_UNPAID_ENDS}
    ),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.SUCCESS, *_UNPAID_ENDS}),
    PaymentStatus.SUCCESS: frozenset({PaymentStatus.REFUNDED}),
    # Snap keeps its page open after a denied card: the traveller may still pay another way.
    PaymentStatus.FAILED: frozenset({PaymentStatus.PROCESSING, PaymentStatus.SUCCESS}),
    PaymentStatus.CANCELED: frozenset(),
    PaymentStatus.EXPIRED: frozenset(),
    PaymentStatus.REFUNDED: frozenset(),
}

# Statuses in which an order's payment attempt still counts: a new attempt may start only
# when the previous one ended unpaid.
OPEN = frozenset({PaymentStatus.PENDING, PaymentStatus.PROCESSING})
PAID = frozenset({PaymentStatus.SUCCESS, PaymentStatus.REFUNDED})


def can_transition(current: PaymentStatus, new: PaymentStatus) -> bool:
    """Tell whether a payment in `current` may move to `new`."""
    return new in TRANSITIONS[current]


def is_final(status: PaymentStatus) -> bool:
    """Tell whether no further transition can leave `status`."""
    return not TRANSITIONS[status]


@dataclass(frozen=True)
class GatewayOutcome:
    """What a gateway status means for a payment: the status it points to and why."""

    status: PaymentStatus
    detail: str | None = None
    review: bool = False


# Midtrans transaction_status -> our status, for the statuses that need no fraud_status.
_MIDTRANS: dict[str, GatewayOutcome] = {
    "pending": GatewayOutcome(PaymentStatus.PENDING),
    "settlement": GatewayOutcome(PaymentStatus.SUCCESS),
    "authorize": GatewayOutcome(PaymentStatus.PROCESSING, "authorized"),
    "deny": GatewayOutcome(PaymentStatus.FAILED, "denied"),
    "failure": GatewayOutcome(PaymentStatus.FAILED, "failure"),
    "cancel": GatewayOutcome(PaymentStatus.CANCELED),
    "expire": GatewayOutcome(PaymentStatus.EXPIRED),
    "refund": GatewayOutcome(PaymentStatus.REFUNDED),
    "partial_refund": GatewayOutcome(PaymentStatus.SUCCESS, "partial_refund"),
    "chargeback": GatewayOutcome(PaymentStatus.REFUNDED, "chargeback", review=True),
    "partial_chargeback": GatewayOutcome(PaymentStatus.SUCCESS, "partial_chargeback", review=True),
}


def from_midtrans(transaction_status: str, fraud_status: str | None) -> GatewayOutcome | None:
    """Map Midtrans's transaction_status and fraud_status to our status; None if unknown."""
    transaction_status = transaction_status.lower()
    fraud = (fraud_status or "").lower()
    if fraud == "deny" and transaction_status in {"capture", "settlement", "pending"}:
        return GatewayOutcome(PaymentStatus.FAILED, "fraud_denied")
    if transaction_status == "capture":
        # A captured card is paid only once fraud screening accepts it.
        if fraud == "challenge":
            return GatewayOutcome(PaymentStatus.PROCESSING, "fraud_challenge", review=True)
        return GatewayOutcome(PaymentStatus.SUCCESS)
    return _MIDTRANS.get(transaction_status)
