"""Staff sessions kept on the server: signing out, a new password or idling ends them for good."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from tiketq.extensions import Model, db
from tiketq.payments.models import UTCDateTime

log = logging.getLogger(__name__)

# Use is written at most this often, and at most every tenth of OPS_IDLE_MINUTES: an unwritten
# request makes the idle timeout end a session that much early, never late.
TOUCH_EVERY = timedelta(minutes=1)
TOUCH_SHARE_OF_IDLE = 0.1


class StaffSession(Model):
    """One sign-in of a member of staff, found by a hash of the token in their cookie."""

    __tablename__ = "staff_sessions"

    # Only the SHA-256 of the token: a copy of this table opens no session.
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    staff_name: Mapped[str] = mapped_column(sa.String(64))
    # The password's stamp at sign-in: another password (a new hash in OPS_USERS) ends it.
    password_stamp: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def digest(token: str) -> str:
    """The SHA-256 of a session token, as stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def start(staff_name: str, password_stamp: str, now: datetime) -> str:
    """Store a new session and return its token, which only the cookie keeps."""
    token = secrets.token_urlsafe(32)
    db.session.add(
        StaffSession(
            token_hash=digest(token),
            staff_name=staff_name,
            password_stamp=password_stamp,
            created_at=now,
            last_seen_at=now,
        )
    )
    db.session.commit()
    return token


def find_open(token: str) -> StaffSession | None:
    """The session of this token, unless it has ended."""
    found = db.session.get(StaffSession, digest(token))
    return found if found is not None and found.ended_at is None else None


def end(staff_session: StaffSession, now: datetime, reason: str) -> None:
    """End the session for good."""
    staff_session.ended_at = now
    db.session.commit()
    log.info("ops session ended", extra={"staff": staff_session.staff_name, "reason": reason})


def why_over(
    staff_session: StaffSession,
    password_stamp: str | None,
    config: Mapping[str, Any],
    now: datetime,
) -> str | None:
    """Why the session is over now, or None while it may go on."""
    if password_stamp is None:
        return "staff removed"
    if password_stamp != staff_session.password_stamp:
        return "password changed"
    if now - staff_session.created_at > timedelta(hours=config["OPS_SESSION_HOURS"]):
        return "expired"
    if now - staff_session.last_seen_at > _idle(config):
        return "idle"
    return None


def touch(staff_session: StaffSession, config: Mapping[str, Any], now: datetime) -> None:
    """Record that the session is in use, unless that was recorded only a moment ago."""
    if now - staff_session.last_seen_at >= min(TOUCH_EVERY, _idle(config) * TOUCH_SHARE_OF_IDLE):
        staff_session.last_seen_at = now
        db.session.commit()


def _idle(config: Mapping[str, Any]) -> timedelta:
    return timedelta(minutes=config["OPS_IDLE_MINUTES"])
