"""Rules for what can be sent to Midtrans as an order: ids, amounts and item lines; pure Python."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from tiketq.gateway import LineItem
from tiketq.payments.errors import InvalidOrder

# Midtrans accepts these characters in order_id, at most 50 of them; anything else can break
# its status URLs (midtransclient concatenates ids into paths unencoded).
ORDER_ID_PATTERN = r"^[A-Za-z0-9\-_~.]{1,50}$"
ORDER_ID_MAX = 50
# A caller's order id: Midtrans's characters but `~`, which only our attempts carry, so that
# no order can be named like another order's attempt; and not `.` or `..`, which a URL path
# reads as "this" or "up" (/v2/./status). Without lookarounds, so JSON Schema tools read it.
CALLER_ORDER_ID_PATTERN = (
    r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,49}"
    r"|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,48}"
    r"|\.\.[A-Za-z0-9._-]{1,48})$"
)
ITEM_FIELD_MAX = 50
ATTEMPT_SEPARATOR = "~"
# Hex digits of the digest that names a long order id's later attempts (96 bits: unforgeable).
LONG_ID_DIGEST = 24
PaymentMethod = Literal["credit_card", "bank_transfer", "e_wallet", "qris", "retail"]
PAYMENT_METHODS: tuple[PaymentMethod, ...] = get_args(PaymentMethod)

_ORDER_ID = re.compile(ORDER_ID_PATTERN)
_CALLER_ORDER_ID = re.compile(CALLER_ORDER_ID_PATTERN)


@dataclass(frozen=True)
class ItemLine:
    """An item line as a caller sent it, amounts already integer rupiah."""

    name: str
    price: int
    quantity: int
    id: str | None = None


def is_valid_order_id(order_id: str) -> bool:
    """Tell whether Midtrans would accept `order_id`."""
    return bool(_ORDER_ID.fullmatch(order_id))


def caller_order_id_problem(order_id: str) -> str | None:
    """What is wrong with an order id a caller sent, in words; None if nothing."""
    if ATTEMPT_SEPARATOR in order_id:
        return f"must not contain {ATTEMPT_SEPARATOR!r}: it marks this service's retry attempts"
    if order_id in (".", ".."):
        return "must not be '.' or '..'"
    if not _CALLER_ORDER_ID.fullmatch(order_id):
        return "must be 1-50 characters of A-Z, a-z, 0-9, '-', '_' and '.'"
    return None


def gateway_order_id(order_id: str, attempt: int) -> str:
    """The order id Midtrans sees for an attempt: the order id first, then a suffixed one.

    Distinct orders never share one: a long order id's later attempts are named by a digest
    of the whole id, as cutting it short could make it another order's.
    """
    if attempt == 1:
        return order_id
    suffix = f"{ATTEMPT_SEPARATOR}{attempt}"
    if len(order_id) + len(suffix) <= ORDER_ID_MAX:
        return order_id + suffix
    digest = hashlib.sha256(order_id.encode()).hexdigest()[:LONG_ID_DIGEST]
    keep = ORDER_ID_MAX - len(suffix) - len(ATTEMPT_SEPARATOR) - LONG_ID_DIGEST
    return f"{order_id[:keep]}{ATTEMPT_SEPARATOR}{digest}{suffix}"


def normalise_items(order_id: str, amount: int, lines: Iterable[ItemLine]) -> tuple[LineItem, ...]:
    """Turn caller lines into Midtrans item_details whose sum is exactly `amount`.

    Zero-price lines (an empty "Tax and discount") are dropped, negative ones kept as
    discounts, ids made unique (callers send the order number on every line) and texts cut
    to Midtrans's 50 characters. A sum that still differs from the amount is refused.
    """
    items: list[LineItem] = []
    used: set[str] = set()
    for line in lines:
        if line.price == 0:
            continue
        base = (line.id or order_id)[:ITEM_FIELD_MAX]
        item_id, n = base, 1
        while item_id in used:
            n += 1
            suffix = f"-{n}"
            item_id = base[: ITEM_FIELD_MAX - len(suffix)] + suffix
        used.add(item_id)
        items.append(
            LineItem(
                id=item_id,
                name=line.name.strip()[:ITEM_FIELD_MAX] or "Item",
                price=line.price,
                quantity=line.quantity,
            )
        )
    total = sum(item.price * item.quantity for item in items)
    if items and total != amount:
        raise InvalidOrder(
            f"item_details add up to {total} but amount is {amount}",
            [
                {
                    "field": "item_details",
                    "message": f"sum of price x quantity is {total}, amount is {amount}",
                    "sum": total,
                    "amount": amount,
                }
            ],
        )
    return tuple(items)
