"""Core API response and HTTP notification bodies built from stored transactions."""

from datetime import datetime
from typing import Any

from .lifecycle import notification_status_code, status_after, status_code
from .store import Refund, Transaction
from .wire import midtrans_time, money, signature_key

_REFUND_MESSAGES = {
    "online": "Success, refund request is approved",
    "direct": "Success, refund request is approved by the bank",
}
_CUSTOM_FIELDS = ("custom_field1", "custom_field2", "custom_field3")


def status_body(txn: Transaction, *, server_key: str, merchant_id: str) -> dict[str, Any]:
    """Return the Get Status body for a transaction that exists in Core API."""
    return _signed_report(
        txn,
        status_code(txn),
        "Success, transaction is found",
        server_key=server_key,
        merchant_id=merchant_id,
        unconfirmed=None,
    )


def notification_body(
    txn: Transaction, *, server_key: str, merchant_id: str, bank_confirmed: bool = True
) -> dict[str, Any]:
    """Return the HTTP notification Midtrans sends about a transaction's current state.

    `bank_confirmed=False` gives the first of the two notifications about the newest refund.
    """
    return _signed_report(
        txn,
        notification_status_code(txn),
        "midtrans payment notification",
        server_key=server_key,
        merchant_id=merchant_id,
        unconfirmed=None if bank_confirmed or not txn.refunds else txn.refunds[-1],
    )


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
        "gross_amount": money(txn.charged_amount),
        "currency": "IDR",
        "payment_type": txn.payment_type,
        "transaction_time": _time(txn.transaction_time),
        "transaction_status": status_after(txn, refund),
        "refund_chargeback_id": refund.refund_chargeback_id,
        "refund_amount": money(refund.amount),
        "refund_key": refund.refund_key,
    }


def _signed_report(
    txn: Transaction,
    code: str,
    message: str,
    *,
    server_key: str,
    merchant_id: str,
    unconfirmed: Refund | None,
) -> dict[str, Any]:
    """Build a status or notification body, signed over exactly the strings it carries."""
    body: dict[str, Any] = {
        "status_code": code,
        "status_message": message,
        **_transaction_fields(txn, merchant_id),
    }
    body["signature_key"] = signature_key(body["order_id"], code, body["gross_amount"], server_key)
    if txn.refunds:
        body["refund_amount"] = money(txn.refunded_amount)
        body["refunds"] = [
            _refund_entry(refund, bank_confirmed=refund is not unconfirmed)
            for refund in txn.refunds
        ]
    body.update({name: txn.request[name] for name in _CUSTOM_FIELDS if name in txn.request})
    return body


def _transaction_fields(txn: Transaction, merchant_id: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "transaction_id": txn.transaction_id,
        "order_id": txn.order_id,
        "merchant_id": merchant_id,
        "gross_amount": money(txn.charged_amount),
        "currency": "IDR",
        "payment_type": txn.payment_type,
        "transaction_time": _time(txn.transaction_time),
        "transaction_status": txn.transaction_status,
    }
    if txn.customer_fee:
        # Automatic Fee Imposition: gross_amount includes the fee and the order amount moves here.
        fields["metadata"] = {
            "extra_info": {
                "gross_amount_info": {
                    "original_amount": str(txn.gross_amount),
                    "gross_amount": str(txn.charged_amount),
                    "customer_imposed_payment_fee": str(txn.customer_fee),
                }
            }
        }
    if txn.fraud_status is not None:
        fields["fraud_status"] = txn.fraud_status
    if txn.settlement_time is not None:
        fields["settlement_time"] = midtrans_time(txn.settlement_time)
    fields["expiry_time"] = midtrans_time(txn.expiry_time)
    fields.update(txn.method_fields)
    if "va_numbers" in txn.method_fields:
        fields["payment_amounts"] = (
            [{"paid_at": midtrans_time(txn.settlement_time), "amount": money(txn.charged_amount)}]
            if txn.settlement_time is not None
            else []
        )
    return fields


def _refund_entry(refund: Refund, *, bank_confirmed: bool) -> dict[str, Any]:
    created_at = midtrans_time(refund.created_at)
    entry: dict[str, Any] = {
        "refund_chargeback_id": refund.refund_chargeback_id,
        "refund_amount": money(refund.amount),
        "created_at": created_at,
        "reason": refund.reason,
        "refund_key": refund.refund_key,
        "refund_method": refund.method,
    }
    if bank_confirmed:
        # The simulated bank confirms at once.
        entry["bank_confirmed_at"] = created_at
    return entry


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else midtrans_time(moment)
