"""Staff of the ops pages: configured as name:hash entries, signed in with a session cookie."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, session
from werkzeug.security import check_password_hash, generate_password_hash

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
    """Start a staff session, dropping whatever the session held before."""
    session.clear()
    # Flask-WTF keeps this request's CSRF token in g; it belonged to the session just dropped.
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    session[SESSION_KEY] = {"name": user.name, "stamp": user.stamp, "since": int(time.time())}


def sign_out() -> None:
    """End the staff session."""
    session.pop(SESSION_KEY, None)


def signed_in(config: Mapping[str, Any]) -> StaffUser | None:
    """The member of staff of this session, if it is recent and their password unchanged."""
    held = session.get(SESSION_KEY)
    if not isinstance(held, dict):
        return None
    user = configured(config).get(str(held.get("name")))
    age = time.time() - float(held.get("since", 0))
    if user is None or held.get("stamp") != user.stamp or age > config["OPS_SESSION_HOURS"] * 3600:
        session.pop(SESSION_KEY, None)
        return None
    return user
