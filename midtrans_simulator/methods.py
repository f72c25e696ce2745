"""Snap payment-method codes, how they appear in Core API bodies, and their generated details."""

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

VA_CODES = (
    "echannel",
    "permata_va",
    "bca_va",
    "bni_va",
    "bri_va",
    "cimb_va",
    "danamon_va",
    "bsi_va",
    "seabank_va",
    "saqu_va",
    "other_va",
)
STORE_CODES = ("alfamart", "indomaret")
SNAP_CODES = frozenset(
    (
        "credit_card",
        *VA_CODES,
        "gopay",
        "ovo",
        "dana",
        "shopeepay",
        "other_qris",
        *STORE_CODES,
        "akulaku",
        "kredivo",
    )
)
ALIASES = {"bank_transfer": VA_CODES, "cstore": STORE_CODES}

# Methods whose settlement can be reversed to deny within minutes (Midtrans status cycle).
REVERSIBLE_CODES = frozenset(("permata_va", "echannel", "indomaret"))
REFUNDABLE_PAYMENT_TYPES = frozenset(
    ("credit_card", "gopay", "shopeepay", "dana", "ovo", "qris", "kredivo", "akulaku")
)


@dataclass(frozen=True)
class Method:
    """A Snap method a simulated traveller can pay with."""

    code: str
    label: str
    payment_type: str
    details: Callable[[dict[str, Any]], dict[str, Any]]

    @property
    def is_card(self) -> bool:
        """Whether this is a card payment, which captures instead of settling."""
        return self.payment_type == "credit_card"


def _digits(count: int) -> str:
    return f"{secrets.randbelow(10**count):0{count}d}"


def _va(bank: str, length: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda request: {"va_numbers": [{"bank": bank, "va_number": _digits(length)}]}


def _card(request: dict[str, Any]) -> dict[str, Any]:
    options = request.get("credit_card")
    bank = options.get("bank") if isinstance(options, dict) else None
    return {
        "masked_card": "48111111-1114",
        "card_type": "credit",
        "bank": bank if isinstance(bank, str) and bank else "bni",
        "approval_code": _digits(13),
        "eci": "05",
        "channel_response_code": "00",
        "channel_response_message": "Approved",
    }


def _store(name: str, length: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda request: {"store": name, "payment_code": _digits(length)}


def _no_details(request: dict[str, Any]) -> dict[str, Any]:
    return {}


METHODS = {
    method.code: method
    for method in (
        Method("bca_va", "BCA Virtual Account", "bank_transfer", _va("bca", 11)),
        Method("bni_va", "BNI Virtual Account", "bank_transfer", _va("bni", 16)),
        Method("bri_va", "BRI Virtual Account", "bank_transfer", _va("bri", 18)),
        Method("cimb_va", "CIMB Niaga Virtual Account", "bank_transfer", _va("cimb", 16)),
        Method("bsi_va", "BSI Virtual Account", "bank_transfer", _va("bsi", 16)),
        Method(
            "permata_va",
            "Permata Virtual Account",
            "bank_transfer",
            lambda request: {"permata_va_number": _digits(16)},
        ),
        Method(
            "echannel",
            "Mandiri Bill Payment",
            "echannel",
            lambda request: {"bill_key": _digits(12), "biller_code": "70012"},
        ),
        Method("credit_card", "Credit/debit card", "credit_card", _card),
        Method("gopay", "GoPay", "gopay", _no_details),
        Method("shopeepay", "ShopeePay", "shopeepay", _no_details),
        Method(
            "other_qris",
            "QRIS",
            "qris",
            lambda request: {"issuer": "gopay", "acquirer": "gopay", "transaction_type": "on-us"},
        ),
        Method("dana", "DANA", "dana", _no_details),
        Method("ovo", "OVO", "ovo", _no_details),
        Method("indomaret", "Indomaret", "cstore", _store("indomaret", 14)),
        Method("alfamart", "Alfamart", "cstore", _store("alfamart", 16)),
        Method("akulaku", "Akulaku PayLater", "akulaku", _no_details),
        Method("kredivo", "Kredivo", "kredivo", _no_details),
    )
}


def unknown_codes(codes: Iterable[str]) -> list[str]:
    """Return the codes that are neither Snap method codes nor aliases."""
    return [code for code in codes if code not in SNAP_CODES and code not in ALIASES]


def offered_methods(request: dict[str, Any]) -> list[Method]:
    """List the payable methods a Snap page offers for this request's `enabled_payments`."""
    enabled = request.get("enabled_payments")
    if enabled is None:
        return list(METHODS.values())
    codes = {expanded for code in enabled for expanded in ALIASES.get(code, (code,))}
    return [method for method in METHODS.values() if method.code in codes]
