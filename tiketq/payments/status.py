"""The payments vocabulary: statuses, their details, inbox outcomes, and allowed transitions."""

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


class StatusDetail(StrEnum):
    """The finer truth behind a status, for callers, templates and the ops page."""

    CREATING = "creating"
    AUTHORIZED = "authorized"
    DENIED = "denied"
    FAILURE = "failure"
    FRAUD_DENIED = "fraud_denied"
    FRAUD_CHALLENGE = "fraud_challenge"
    PARTIAL_REFUND = "partial_refund"
    CHARGEBACK = "chargeback"
    PARTIAL_CHARGEBACK = "partial_chargeback"
    AMOUNT_MISMATCH = "amount_mismatch"
    PAID_AFTER_CANCEL = "paid_after_cancel"
    PAID_AFTER_EXPIRY = "paid_after_expiry"
    PAID_TWICE = "paid_twice"
    REVERSED_AFTER_SETTLEMENT = "reversed_after_settlement"
    EXPIRED_BY_WORKER = "expired_by_worker"
    EXPIRED_BEFORE_RETRY = "expired_before_retry"
    CREATE_ABANDONED = "create_abandoned"
    GATEWAY_TIMEOUT = "gateway_timeout"
    GATEWAY_AUTH_FAILED = "gateway_auth_failed"
    GATEWAY_REJECTED = "gateway_rejected"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    # Events of what staff did that changed no status.
    REVIEW_RESOLVED = "review_resolved"
    CHECKED_BY_STAFF = "checked"


# Details that put a payment on the review list.
REVIEW_REASONS = (
    StatusDetail.AMOUNT_MISMATCH,
    StatusDetail.FRAUD_CHALLENGE,
    StatusDetail.PAID_AFTER_CANCEL,
    StatusDetail.PAID_AFTER_EXPIRY,
    StatusDetail.PAID_TWICE,
    StatusDetail.REVERSED_AFTER_SETTLEMENT,
    StatusDetail.CHARGEBACK,
    StatusDetail.PARTIAL_CHARGEBACK,
)


class NotificationOutcome(StrEnum):
    """What became of one received notification."""

    RECEIVED = "received"  # stored, waiting for the worker (also after Midtrans failed to answer)
    APPLIED = "applied"  # Midtrans's answer changed the payment
    DUPLICATE = "duplicate"  # nothing new: the answer or an identical notification was applied
    STALE = "stale"  # the answer is older than what the payment already knows
    FLAGGED = "flagged"  # money where none was expected; a person must look
    AMOUNT_MISMATCH = "amount_mismatch"
    UNSUPPORTED = "unsupported"  # Midtrans answered a state we do not know
    UNKNOWN_ORDER = "unknown_order"  # no payment has this order id (yet)
    FAILED = "failed"  # applying raised; retried a bounded number of times
    BAD_SIGNATURE = "bad_signature"
    STATUS_MISMATCH = "status_mismatch"  # status_code does not fit transaction_status
    MALFORMED = "malformed"


# Refused at the door: stored truncated, answered 4xx, purged after REJECTED_RETENTION_DAYS.
REJECTED_OUTCOMES = (
    NotificationOutcome.BAD_SIGNATURE,
    NotificationOutcome.STATUS_MISMATCH,
    NotificationOutcome.MALFORMED,
)
# Notifications that changed nothing: refused at the door, for no known order, or failing.
UNAPPLIED_OUTCOMES = (
    *REJECTED_OUTCOMES,
    NotificationOutcome.UNKNOWN_ORDER,
    NotificationOutcome.FAILED,
)
# Settled notifications whose raw body is dropped after NOTIFICATION_BODY_RETENTION_DAYS: the
# payment's events and the parsed fields keep what they changed.
BODY_PURGED_OUTCOMES = (NotificationOutcome.APPLIED, NotificationOutcome.DUPLICATE)


_UNPAID_ENDS = frozenset({PaymentStatus.FAILED, PaymentStatus.CANCELED, PaymentStatus.EXPIRED})

# Monotonic: nothing ever returns to pending, and cancel and expiry are final. Money that
# arrives after them is not a transition but a flag for review (see StatusDetail).
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
