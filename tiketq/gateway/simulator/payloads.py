"""Core API response bodies built from stored transactions."""

from datetime import datetime
from typing import Any

from .lifecycle import status_after, status_code
from .store import Refund, Transaction
from .wire import midtrans_time, money, signature_key

_REFUND_MESSAGES = {
    "online": "Success, refund request is approved",
    "direct": "Success, refund request is approved by the bank",
}
_CUSTOM_FIELDS = ("custom_field1", "custom_field2", "custom_field3")


def status_body(txn: Transaction, *, server_key: str, merchant_id: str) -> dict[str, Any]:
    """Return the Get Status body for a transaction that exists in Core API."""
    code = status_code(txn)
    gross_amount = money(txn.gross_amount)
    body: dict[str, Any] = {
        "status_code": code,
        "status_message": "Success, transaction is found",
        **_transaction_fields(txn, merchant_id),
        "signature_key": signature_key(txn.order_id, code, gross_amount, server_key),
    }
    if txn.refunds:
        body["refund_amount"] = money(txn.refunded_amount)
        body["refunds"] = [_refund_entry(refund) for refund in txn.refunds]
    body.update({name: txn.request[name] for name in _CUSTOM_FIELDS if name in txn.request})
    return body


def action_body(txn: Transaction, code: str, message: str, *, merchant_id: str) -> dict[str, Any]:
    """Return the body of a successful cancel/expire/approve/deny call."""
    return {"status_code": code, "status_message": message, **_transaction_fields(txn, merchant_id)}


def refund_body(txn: Transaction, refund: Refund, *, merchant_id: str) -> dict[str, Any]:
    """Return the body answering the refund call that granted `refund` (also when replayed)."""
    return {
        "status_code": "200",
        "status_message": _REFUND_MESSAGES[refund.method],
        "transaction_id": txn.transaction_id,
        "order_id": txn.order_id,
        "merchant_id": merchant_id,
        "gross_amount": money(txn.gross_amount),
        "currency": "IDR",
        "payment_type": txn.payment_type,
        "transaction_time": _time(txn.transaction_time),
        "transaction_status": status_after(txn, refund),
        "refund_chargeback_id": refund.refund_chargeback_id,
        "refund_amount": money(refund.amount),
        "refund_key": refund.refund_key,
    }


def _transaction_fields(txn: Transaction, merchant_id: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "transaction_id": txn.transaction_id,
        "order_id": txn.order_id,
        "merchant_id": merchant_id,
        "gross_amount": money(txn.gross_amount),
        "currency": "IDR",
        "payment_type": txn.payment_type,
        "transaction_time": _time(txn.transaction_time),
        "transaction_status": txn.transaction_status,
    }
    if txn.fraud_status is not None:
        fields["fraud_status"] = txn.fraud_status
    if txn.settlement_time is not None:
        fields["settlement_time"] = midtrans_time(txn.settlement_time)
    fields["expiry_time"] = midtrans_time(txn.expiry_time)
    fields.update(txn.method_fields)
    if "va_numbers" in txn.method_fields:
        fields["payment_amounts"] = (
            [{"paid_at": midtrans_time(txn.settlement_time), "amount": money(txn.gross_amount)}]
            if txn.settlement_time is not None
            else []
        )
    return fields


def _refund_entry(refund: Refund) -> dict[str, Any]:
    created_at = midtrans_time(refund.created_at)
    return {
        "refund_chargeback_id": refund.refund_chargeback_id,
        "refund_amount": money(refund.amount),
        "created_at": created_at,
        "reason": refund.reason,
        "refund_key": refund.refund_key,
        "refund_method": refund.method,
        # The simulated bank confirms at once.
        "bank_confirmed_at": created_at,
    }


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else midtrans_time(moment)
