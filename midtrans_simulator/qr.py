"""The QR image behind a wallet payment's generate-qr-code action.

Midtrans serves it to anyone holding its address, without the server key: the merchant's page
shows it to the traveller as an image.
"""

import io

import segno
from flask import Blueprint, Response
from flask.typing import ResponseReturnValue

from .service import current_simulator
from .wallet import QR_KINDS, qris_payload

bp = Blueprint("qr", __name__, url_prefix="/v2")


@bp.get("/<kind>/<transaction_id>/qr-code")
def qr_code(kind: str, transaction_id: str) -> ResponseReturnValue:
    """The QR image of a QRIS or GoPay transaction, as a PNG."""
    txn = current_simulator().store.get(transaction_id)
    if kind not in QR_KINDS or txn is None or txn.payment_type != kind:
        return "QR code not found", 404
    image = io.BytesIO()
    code = segno.make(qris_payload(txn.order_id, txn.gross_amount), error="m")
    code.save(image, kind="png", scale=6, border=4)
    return Response(image.getvalue(), mimetype="image/png")
