"""How the ops pages write times, ages and shares."""

from __future__ import annotations

from datetime import datetime


def age(value: datetime | None, now: datetime) -> str:
    """How long ago, roughly: '45 s', '12 min', '3 h 05 min', '2 d 4 h'."""
    if value is None:
        return "never"
    seconds = max(0, int((now - value).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def percent(share: float | None) -> str:
    """A share as a percentage with one decimal: '66.7 %'; a dash when there is none."""
    return "—" if share is None else f"{share * 100:.1f} %"


def customer_label(key: str) -> str:
    """A customer field's key in words, as staff read it: 'first_name' → 'First name'."""
    return key.replace("_", " ").strip().capitalize()
