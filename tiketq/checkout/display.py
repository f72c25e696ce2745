"""Times and the traveller's details as the traveller's pages show them."""

from __future__ import annotations

import math
import re
from datetime import datetime

from tiketq.formats import WIB

_MONTHS = {
    "id": (
        "Januari",
        "Februari",
        "Maret",
        "April",
        "Mei",
        "Juni",
        "Juli",
        "Agustus",
        "September",
        "Oktober",
        "November",
        "Desember",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}


def moment(value: datetime, lang: str) -> str:
    """A moment in WIB: '26 November 2026, 15.00 WIB' (Indonesian writes 15.00 for 15:00)."""
    local = value.astimezone(WIB)
    separator = "." if lang == "id" else ":"
    month = _MONTHS[lang][local.month - 1]
    return f"{local.day} {month} {local.year}, {local:%H}{separator}{local:%M} WIB"


def seconds_left(deadline: datetime, now: datetime) -> int:
    """Seconds until `deadline`, rounded up, so that 0 means the deadline has passed."""
    return max(0, math.ceil((deadline - now).total_seconds()))


def clock(seconds: int) -> str:
    """A duration as hours, minutes and seconds: 7170 -> '01:59:30'."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


# Indonesia's country code; inside the country a single leading 0 stands for it.
INDONESIA = "62"
# Fewer hidden digits than this, and someone holding the link could try every number.
MIN_HIDDEN_DIGITS = 4


def mask_email(email: str) -> str:
    """'rani@example.com' -> 'r***@example.com': the traveller knows it, a stranger can't use it."""
    local, _, domain = email.rpartition("@")
    if not (local and domain):
        return "***"
    return f"{local[0]}***@{domain}"


def mask_phone(phone: str) -> str:
    """'0812-3456-7890' -> '+62 812 **** 7890', or only the last 2 digits of a shorter number."""
    country, number = _country_and_number(phone)
    code = f"+{country} " if country else ""
    if country and len(number) >= 3 + MIN_HIDDEN_DIGITS + 4:
        return f"{code}{number[:3]} **** {number[-4:]}"
    if len(number) >= MIN_HIDDEN_DIGITS + 2:
        return f"{code}**** {number[-2:]}"
    return "****"


def _country_and_number(phone: str) -> tuple[str | None, str]:
    # Only Indonesia's code is split off: other codes are 1 to 3 digits, and which is which
    # takes a table this page does not need, so their digits are masked as one number.
    digits = re.sub(r"\D", "", phone)
    if digits.startswith(INDONESIA):
        return INDONESIA, digits[len(INDONESIA) :]
    if re.match(r"0[1-9]", digits):
        return INDONESIA, digits[1:]
    return None, digits


def first_word(name: str | None) -> str:
    """'Sari Dewi' -> 'Sari': enough to greet the traveller, little for anyone else."""
    words = (name or "").split()
    return words[0] if words else ""
