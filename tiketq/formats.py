"""Rupiah and Western Indonesian Time, written one way for the pages, the ops pages and Midtrans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

# Midtrans quotes every deadline in Western Indonesian Time, which has no daylight saving.
WIB = timezone(timedelta(hours=7), "WIB")
# How Midtrans writes a moment, in WIB: "2026-01-05 14:30:00".
MIDTRANS_TIME = "%Y-%m-%d %H:%M:%S"


def rupiah(amount: int) -> str:
    """Integer rupiah with dots between thousands: 1250000 -> 'Rp 1.250.000'."""
    sign = "-" if amount < 0 else ""
    return f"{sign}Rp {abs(amount):,}".replace(",", ".")


def wib(value: datetime | None) -> str:
    """A moment in Western Indonesian Time to the second: '2026-11-26 14:05:09 WIB'."""
    return value.astimezone(WIB).strftime(f"{MIDTRANS_TIME} WIB") if value else "never"


def midtrans_time(value: object) -> datetime | None:
    """A Midtrans time ("2026-01-05 14:30:00", Jakarta time) in UTC; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, MIDTRANS_TIME).replace(tzinfo=WIB).astimezone(UTC)
    except ValueError:
        return None
