"""Refused ops logins, counted per account and per address in a store every worker shares."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse
from limits.strategies import FixedWindowRateLimiter

# Flask-Limiter keeps the store (RATELIMIT_STORAGE_URI, RATELIMIT_KEY_PREFIX); no route has a
# limit of its own: the webhook and the JSON API are never limited.
limiter = Limiter(key_func=get_remote_address)


@dataclass(frozen=True)
class Counter:
    """One limit and the key it counts under."""

    limit: RateLimitItem
    key: tuple[str, ...]


@dataclass(frozen=True)
class Tries:
    """The try a login took from each counter; if one was used up, the seconds to wait."""

    counters: tuple[Counter, ...]
    retry_after: int | None

    @property
    def limited(self) -> bool:
        """Whether a counter was used up, so that no password may be checked."""
        return self.retry_after is not None

    def give_back(self) -> None:
        """Return the tries: the login was not refused (a right password, or a limited one)."""
        for counter in self.counters:
            # A fixed window's count is a plain counter, the one kind that can be given back. Had
            # the window ended meanwhile, the next one starts a try richer: harmless.
            limiter.storage.incr(
                counter.limit.key_for(*counter.key), counter.limit.get_expiry(), amount=-1
            )


def take(name: str) -> Tries:
    """Take a try for this name and for the client's address, before any password is checked.

    Taken first, in one atomic step per counter, so that logins racing on several workers can
    never check more passwords than the limit allows; a limited login checks none, so right and
    wrong passwords are answered alike.
    """
    window = _window()
    counters = _counters(name)
    exhausted = [counter for counter in counters if not window.hit(counter.limit, *counter.key)]
    if not exhausted:
        return Tries(counters, None)
    tries = Tries(counters, _seconds_until_reset(window, exhausted))
    tries.give_back()
    return tries


def _counters(name: str) -> tuple[Counter, ...]:
    config = current_app.config
    # The prefix keeps deployments (and test runs) that share one Redis apart.
    prefix = config["RATELIMIT_KEY_PREFIX"]
    scope = (prefix, "ops-login") if prefix else ("ops-login",)
    return (
        Counter(parse(config["OPS_LOGIN_RATE"]), (*scope, "account", name)),
        Counter(
            parse(config["OPS_LOGIN_ADDRESS_RATE"]),
            (*scope, "address", get_remote_address()),
        ),
    )


def _window() -> FixedWindowRateLimiter:
    return FixedWindowRateLimiter(limiter.storage)


def _seconds_until_reset(window: FixedWindowRateLimiter, exhausted: list[Counter]) -> int:
    reset = max(window.get_window_stats(c.limit, *c.key).reset_time for c in exhausted)
    return max(1, math.ceil(reset - time.time()))
