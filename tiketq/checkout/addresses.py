"""Where the traveller goes back to TiketQ: FINISH_URL, or the payment's allow-listed finish_url."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from tiketq.payments.models import Payment

MAX_LENGTH = 2048
# Printable ASCII without spaces or backslashes: browsers read "\" as "/" where urlsplit does
# not, so "https://evil.example\@tiketq.example" would reach one host while we checked another.
_PLAIN_URL = re.compile(r"^[!-~]+$")


@dataclass(frozen=True)
class ReturnRules:
    """Which addresses a payment may send the traveller back to."""

    hosts: frozenset[str]
    https_only: bool

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> ReturnRules:
        """The rules the configuration sets: FINISH_URL_HOSTS, and https only in production."""
        return cls(
            hosts=frozenset(config.get("FINISH_URL_HOSTS") or ()),
            https_only=bool(config.get("MIDTRANS_IS_PRODUCTION")),
        )


def finish_url_problem(url: str, rules: ReturnRules) -> str | None:
    """Why `url` may not be a payment's finish_url, or None when it may."""
    if not rules.hosts:
        return "no finish_url is accepted: FINISH_URL_HOSTS lists no host"
    allowed = ", ".join(sorted(rules.hosts))
    schemes = ("https",) if rules.https_only else ("http", "https")
    if len(url) > MAX_LENGTH or not _PLAIN_URL.match(url):
        return f"must be a plain {' or '.join(schemes)} address on one of: {allowed}"
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        return f"must be an {' or '.join(schemes)} address on one of: {allowed}"
    # A user part ("https://tiketq.example@evil.example") only makes a host look like another.
    host = (parts.hostname or "").lower()
    if "@" in parts.netloc or host not in rules.hosts:
        return f"host {host or '(none)'!r} is not one of FINISH_URL_HOSTS: {allowed}"
    return None


def return_address(payment: Payment, config: Mapping[str, Any]) -> str | None:
    """The payment's own finish_url if still allowed, else FINISH_URL filled in, else None."""
    own = payment.finish_url
    # Checked again: a host taken off FINISH_URL_HOSTS must stop receiving travellers at once.
    if own and finish_url_problem(own, ReturnRules.of(config)) is None:
        return own
    template = config.get("FINISH_URL")
    if not template:
        return None
    # config.py allows only these two placeholders in FINISH_URL.
    return str(template).format(order_id=quote(payment.order_id, safe=""), payment_id=payment.id)
