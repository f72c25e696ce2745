"""One notification attempt over HTTP, made the way Midtrans makes it."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import requests

from .wire import utc_now

HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "User-Agent": "Veritrans",
}
MAX_REDIRECTS = 5
# Only these keep the method and body; Midtrans does not follow 301/302/303 at all.
_REPOST_REDIRECTS = frozenset((307, 308))


@dataclass(frozen=True)
class Attempt:
    """The outcome of posting a notification once, redirects included."""

    at: datetime
    response_code: int | None
    error: str | None = None
    redirected_to: tuple[str, ...] = ()

    @property
    def delivered(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.response_code is not None and 200 <= self.response_code < 300

    def to_json(self) -> dict[str, Any]:
        """Return the attempt as a history entry."""
        return {
            "at": self.at.isoformat(),
            "response_code": self.response_code,
            "error": self.error,
            "redirected_to": list(self.redirected_to),
        }


def post_notification(url: str, body: str, *, timeout: float) -> Attempt:
    """POST `body` to `url`, re-posting it through at most five 307/308 redirects."""
    at = utc_now()
    redirected_to: list[str] = []
    target = url
    while True:
        try:
            response = requests.post(
                target,
                data=body.encode("utf-8"),
                headers=HEADERS,
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            return Attempt(at, None, "timeout", tuple(redirected_to))
        except requests.RequestException as exc:
            error = f"connection error: {type(exc).__name__}"
            return Attempt(at, None, error, tuple(redirected_to))
        location = response.headers.get("Location")
        if (
            response.status_code in _REPOST_REDIRECTS
            and location
            and len(redirected_to) < MAX_REDIRECTS
        ):
            target = urljoin(target, location)
            redirected_to.append(target)
            continue
        return Attempt(at, response.status_code, None, tuple(redirected_to))
