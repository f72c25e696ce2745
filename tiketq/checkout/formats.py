"""Money and times as Indonesian travellers read them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

# Midtrans quotes every deadline in Western Indonesian Time, which has no daylight saving.
WIB = timezone(timedelta(hours=7), "WIB")

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


def rupiah(amount: int) -> str:
    """Integer rupiah with dots between thousands: 1250000 -> 'Rp 1.250.000'."""
    sign = "-" if amount < 0 else ""
    return f"{sign}Rp {abs(amount):,}".replace(",", ".")


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
