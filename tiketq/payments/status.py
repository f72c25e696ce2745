"""Payment statuses and the transitions allowed between them; pure Python."""

from __future__ import annotations

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

# Monotonic: nothing ever returns to pending, and an unpaid end is final. Money that arrives
# after an unpaid end is not a transition but a flag for review (see status_detail).
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.PROCESSING, PaymentStatus.SUCCESS, *_UNPAID_ENDS}
    ),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.SUCCESS, *_UNPAID_ENDS}),
    PaymentStatus.SUCCESS: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.FAILED: frozenset(),
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
