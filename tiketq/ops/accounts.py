"""Staff of the ops pages: configured as name:hash entries, signed in with a server-side session."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, session
from werkzeug.security import check_password_hash, generate_password_hash

from tiketq.ops import sessions
from tiketq.payments.models import utcnow

log = logging.getLogger(__name__)

SESSION_KEY = "staff"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD_LENGTH = 12


@dataclass(frozen=True)
class StaffUser:
    """One configured member of staff and the werkzeug hash of their password."""

    name: str
    password_hash: str

    @property
    def stamp(self) -> str:
        """A short fingerprint of the hash: a changed password ends the sessions it began."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def configured(config: Mapping[str, Any]) -> dict[str, StaffUser]:
    """The staff named in OPS_USERS, by name."""
    users = {}
    for entry in config.get("OPS_USERS", []):
        # The hash itself holds colons (scrypt:32768:8:1$salt$hex): split at the first only.
        name, _, password_hash = entry.partition(":")
        users[name] = StaffUser(name, password_hash)
    return users


def user_entry(name: str, password: str) -> str:
    """The OPS_USERS entry for a member of staff: name:hash; refuses weak input."""
    if not NAME_PATTERN.match(name):
        raise ValueError("the name may hold letters, digits and . _ @ - (at most 64)")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    return f"{name}:{generate_password_hash(password)}"


def authenticate(config: Mapping[str, Any], name: str, password: str) -> StaffUser | None:
    """The member of staff with this name and password, else None."""
    users = configured(config)
    if not users:
        log.warning("ops login refused: no staff configured (set OPS_USERS)")
        return None
    user = users.get(name)
    # An unknown name costs one hash check too, so timing does not tell which names exist.
    checked = user or next(iter(users.values()))
    if check_password_hash(checked.password_hash, password) and user is not None:
        return user
    return None


def sign_in(user: StaffUser) -> None:
    """Start a staff session, ending whatever session the browser held before."""
    _end_held("signed in again")
    session.clear()
    # Flask-WTF keeps this request's CSRF token in g; it belonged to the session just dropped.
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    session[SESSION_KEY] = sessions.start(user.name, user.stamp, utcnow())


def sign_out() -> None:
    """End the staff session, on the server: a copy of the cookie opens nothing afterwards."""
    _end_held("signed out")


def signed_in(config: Mapping[str, Any]) -> StaffUser | None:
    """The member of staff of this session while the server has it open; ends it once it is over."""
    held = _held()
    if held is None:
        return None
    user = configured(config).get(held.staff_name)
    now = utcnow()
    reason = sessions.why_over(held, user.stamp if user else None, config, now)
    if reason is not None:
        sessions.end(held, now, reason)
        session.pop(SESSION_KEY, None)
        return None
    sessions.touch(held, config, now)
    return user


def _held() -> sessions.StaffSession | None:
    # Cookies from before server-side sessions held a dict: they open nothing.
    token = session.get(SESSION_KEY)
    found = sessions.find_open(token) if isinstance(token, str) else None
    if found is None:
        session.pop(SESSION_KEY, None)
    return found


def _end_held(reason: str) -> None:
    held = _held()
    session.pop(SESSION_KEY, None)
    if held is not None:
        sessions.end(held, utcnow(), reason)
