"""QRIS and e-wallet payments as Midtrans answers them: a QR string, a QR image, an app link.

Midtrans's charge and status answers of a pending GoPay, ShopeePay or QRIS payment list
`actions` (generate-qr-code, deeplink-redirect...) and QRIS adds the `qr_string` itself.
"""

from typing import Any

from flask import url_for

from .store import Transaction

# Which actions Midtrans lists for each pending payment type (Core API charge answers).
_ACTIONS = {
    "qris": ("generate-qr-code",),
    "gopay": ("generate-qr-code", "deeplink-redirect", "get-status", "cancel"),
    "shopeepay": ("deeplink-redirect",),
}
QR_KINDS = frozenset({"qris", "gopay"})
_MERCHANT_NAME = "TIKETQ SIMULATOR"
_MERCHANT_CITY = "JAKARTA"
_TRAVEL_AGENCY_MCC = "4722"


def answer_fields(txn: Transaction) -> dict[str, Any]:
    """What a status answer adds for a pending wallet transaction: `actions`, QRIS's string."""
    if txn.transaction_status != "pending" or txn.payment_type not in _ACTIONS:
        return {}
    listed = _ACTIONS[txn.payment_type]
    fields: dict[str, Any] = {"actions": [_action(txn, name) for name in listed]}
    if txn.payment_type == "qris":
        fields["qr_string"] = qris_payload(txn.order_id, txn.gross_amount)
    return fields


def _action(txn: Transaction, name: str) -> dict[str, str]:
    by_id = {"transaction_id": txn.transaction_id}
    endpoint, values, method = {
        "generate-qr-code": ("qr.qr_code", {"kind": txn.payment_type, **by_id}, "GET"),
        # Where the wallet app would open: the simulator's own page, on which a tester pays.
        "deeplink-redirect": ("snap.checkout", {"token": txn.token}, "GET"),
        "get-status": ("core.status", by_id, "GET"),
        "cancel": ("core.cancel", by_id, "POST"),
    }[name]
    url = url_for(f"midtrans_simulator.{endpoint}", **values, _external=True)
    return {"name": name, "method": method, "url": url}


def qris_payload(order_id: str, amount: int) -> str:
    """An EMVCo merchant-presented QR payload for the order, in QRIS's layout, with its CRC."""
    body = "".join(
        (
            _tlv("00", "01"),  # payload format
            _tlv("01", "12"),  # dynamic: one amount, one payment
            _tlv("26", _tlv("00", "ID.CO.SIMULATOR.WWW") + _tlv("01", "9360000000000000001")),
            _tlv("51", _tlv("00", "ID.CO.QRIS.WWW") + _tlv("02", "ID0000000000001")),
            _tlv("52", _TRAVEL_AGENCY_MCC),
            _tlv("53", "360"),  # rupiah
            _tlv("54", str(amount)),
            _tlv("58", "ID"),
            _tlv("59", _MERCHANT_NAME),
            _tlv("60", _MERCHANT_CITY),
            _tlv("62", _tlv("01", order_id[:25])),  # the bill number
        )
    )
    unsigned = body + "6304"
    return f"{unsigned}{_crc16(unsigned.encode()):04X}"


def _tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


def _crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, the checksum EMVCo QR payloads end with."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc
