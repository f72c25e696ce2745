"""When to ask Midtrans again and when to retry a delivery; pure Python."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

# Most travellers pay within minutes; the later checks catch lost notifications cheaply.
RECONCILE_DELAYS = (
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=2),
)
# The last check lands just before expiry, when a last-minute payment is most likely.
BEFORE_EXPIRY = timedelta(minutes=2)

# About a day of retries, then the delivery is dead-lettered for a person to resend.
DELIVERY_DELAYS = (
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=8),
)
MAX_DELIVERY_ATTEMPTS = len(DELIVERY_DELAYS) + 1
JITTER = 0.2


def next_check(created_at: datetime, expires_at: datetime, checks: int, now: datetime) -> datetime:
    """When to reconcile an open payment that has been checked `checks` times."""
    before_expiry = expires_at - BEFORE_EXPIRY
    if checks < len(RECONCILE_DELAYS):
        planned = created_at + sum(RECONCILE_DELAYS[: checks + 1], timedelta())
        if before_expiry > now:
            planned = min(planned, before_expiry)
        return max(planned, now)
    if before_expiry > now:
        return before_expiry
    # Past its schedule and about to expire: the expiry job takes over; look again meanwhile.
    return now + RECONCILE_DELAYS[0]


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta | None:
    """How long to wait after the `attempts`-th failed delivery; None once it is time to give up."""
    if attempts >= MAX_DELIVERY_ATTEMPTS:
        return None
    base = DELIVERY_DELAYS[attempts - 1]
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return base * spread
