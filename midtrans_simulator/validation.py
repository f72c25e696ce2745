"""Validation of Snap create-transaction requests, with Midtrans-style error messages."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .methods import unknown_codes

ORDER_ID_MAX_LENGTH = 50
_ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9\-_~.]+")
_UNIT_SECONDS = {"day": 86400, "hour": 3600, "minute": 60}
DEFAULT_EXPIRY = timedelta(hours=24)


@dataclass(frozen=True)
class SnapOrder:
    """The facts the simulator keeps from a valid Snap request."""

    order_id: str
    gross_amount: int
    expiry_time: datetime
    page_expiry_time: datetime


class InvalidRequest(Exception):
    """A Snap request Midtrans would refuse with HTTP 400."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(messages)
        self.messages = messages


def parse_snap_request(body: dict[str, Any], now: datetime) -> SnapOrder:
    """Validate a create-transaction body, raising InvalidRequest with every problem found."""
    errors: list[str] = []
    details = body.get("transaction_details")
    if details is None:
        details = {}
    elif not isinstance(details, dict):
        errors.append("transaction_details must be an object")
        details = {}
    order_id = _order_id(details.get("order_id"), errors)
    gross_amount = whole_number(
        details.get("gross_amount"), "transaction_details.gross_amount", errors
    )
    if gross_amount is not None and gross_amount <= 0:
        errors.append("transaction_details.gross_amount must be greater than 0")
        gross_amount = None
    items_total = _items_total(body.get("item_details"), errors)
    if gross_amount is not None and items_total is not None and items_total != gross_amount:
        errors.append("transaction_details.gross_amount is not equal to the sum of item_details")
    _check_enabled_payments(body.get("enabled_payments"), errors)
    expiry = _duration(body.get("expiry"), "expiry", errors, allow_start=True, now=now)
    page_expiry = _duration(
        body.get("page_expiry"), "page_expiry", errors, allow_start=False, now=now
    )
    if errors:
        raise InvalidRequest(errors)
    assert order_id is not None and gross_amount is not None
    expiry_time = expiry or now + DEFAULT_EXPIRY
    # Snap keeps its page open per page_expiry, else until the payment expiry.
    return SnapOrder(order_id, gross_amount, expiry_time, page_expiry or expiry_time)


def _order_id(value: Any, errors: list[str]) -> str | None:
    field = "transaction_details.order_id"
    if value is None or value == "":
        errors.append(f"{field} is required")
    elif not isinstance(value, str):
        errors.append(f"{field} must be a string")
    elif len(value) > ORDER_ID_MAX_LENGTH:
        errors.append(f"{field} is too long (maximum is {ORDER_ID_MAX_LENGTH} characters)")
    elif not _ORDER_ID_PATTERN.fullmatch(value):
        errors.append(f"{field} is invalid, only alphanumeric characters and - _ ~ . are allowed")
    else:
        return value
    return None


def whole_number(value: Any, field: str, errors: list[str]) -> int | None:
    """Return `value` as an int if it is a JSON number without a fraction, else record why not."""
    # IDR has no minor unit, so Midtrans refuses fractions; JSON true is a bool, not a number.
    if value is None:
        errors.append(f"{field} is required")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(f"{field} must be an integer")
    elif isinstance(value, float) and not value.is_integer():
        errors.append(f"{field} must be an integer, decimals are not allowed")
    else:
        return int(value)
    return None


def _items_total(items: Any, errors: list[str]) -> int | None:
    """Sum price * quantity over item_details; None when absent or invalid."""
    if items is None:
        return None
    if not isinstance(items, list):
        errors.append("item_details must be an array")
        return None
    total = 0
    valid = True
    for index, item in enumerate(items):
        prefix = f"item_details[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{prefix} must be an object")
            valid = False
            continue
        price = whole_number(item.get("price"), f"{prefix}.price", errors)
        quantity = whole_number(item.get("quantity"), f"{prefix}.quantity", errors)
        if quantity is not None and quantity < 1:
            errors.append(f"{prefix}.quantity must be greater than or equal to 1")
            quantity = None
        name = item.get("name")
        if not isinstance(name, str) or not name:
            errors.append(f"{prefix}.name is required")
        if price is None or quantity is None:
            valid = False
        else:
            total += price * quantity
    return total if valid else None


def _check_enabled_payments(codes: Any, errors: list[str]) -> None:
    if codes is None:
        return
    if not isinstance(codes, list) or not all(isinstance(code, str) for code in codes):
        errors.append("enabled_payments must be an array of payment type codes")
        return
    errors.extend(
        f"enabled_payments contains unknown payment type: {code}" for code in unknown_codes(codes)
    )


def _duration(
    spec: Any, field: str, errors: list[str], *, allow_start: bool, now: datetime
) -> datetime | None:
    """Turn an expiry/page_expiry object into the moment it ends; None when absent or invalid."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        errors.append(f"{field} must be an object")
        return None
    unit = spec.get("unit")
    # Midtrans accepts the plural forms ("days") as well.
    seconds_per_unit = _UNIT_SECONDS.get(unit.removesuffix("s")) if isinstance(unit, str) else None
    if seconds_per_unit is None:
        errors.append(f"{field}.unit must be one of day, hour, minute")
    duration = spec.get("duration")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
        errors.append(f"{field}.duration must be a positive integer")
        duration = None
    start = now
    if allow_start and spec.get("start_time") is not None:
        try:
            start = datetime.strptime(spec["start_time"], "%Y-%m-%d %H:%M:%S %z")
        except (TypeError, ValueError):
            errors.append(f"{field}.start_time must be formatted as yyyy-MM-dd HH:mm:ss Z")
    if seconds_per_unit is None or duration is None:
        return None
    return start + timedelta(seconds=seconds_per_unit * duration)
