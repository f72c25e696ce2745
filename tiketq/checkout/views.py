"""Blueprint: the traveller's checkout and receipt pages, rendered on the server."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from tiketq import formats
from tiketq.checkout import display, texts
from tiketq.checkout.addresses import return_address
from tiketq.checkout.forms import RetryForm
from tiketq.checkout.wallets import WalletSteps, wallet_steps
from tiketq.config import snap_js_url
from tiketq.gateway import GatewayError, current_gateway
from tiketq.payments import queries, reconcile, rules, service
from tiketq.payments.errors import PaymentError, PaymentNotFound
from tiketq.payments.models import Payment, utcnow
from tiketq.payments.status import OPEN, PAID, PaymentStatus
from tiketq.security import allow_images_from, core_api_origin

bp = Blueprint("checkout", __name__)


def checkout_url(payment_id: uuid.UUID) -> str:
    """The absolute address of a payment's checkout page: the API's payment_url."""
    return _public("checkout.checkout", payment_id=payment_id)


def finish_url(payment_id: uuid.UUID) -> str:
    """The absolute address Snap sends the traveller's browser to when it is done."""
    return _public("checkout.finish", payment_id=payment_id)


def _public(endpoint: str, **values: Any) -> str:
    # From configuration, never from the Host header: whoever sends the first create for an
    # order would otherwise choose where Snap sends every traveller of that order.
    base: str = current_app.config["PUBLIC_BASE_URL"]
    return base + url_for(endpoint, **values)


@bp.before_request
def _choose_language() -> None:
    asked = request.args.get("lang")
    if asked in texts.LANGUAGES:
        session["lang"] = asked
    g.lang = texts.choose(session.get("lang"), request.accept_languages)


@bp.context_processor
def _page_helpers() -> dict[str, Any]:
    lang = g.get("lang", texts.DEFAULT)
    return {
        "lang": lang,
        "languages": texts.LANGUAGES,
        "lang_url": _lang_url,
        "t": texts.translator(lang),
        "rupiah": formats.rupiah,
        "clock": display.clock,
        "moment": lambda value: display.moment(value, lang),
        "method_name": lambda payment_type: texts.method_name(payment_type, lang),
        "first_word": display.first_word,
        "mask_email": display.mask_email,
        "mask_phone": display.mask_phone,
    }


def _lang_url(lang: str) -> str:
    # A form's POST address cannot be reloaded with GET; its page can.
    endpoint = request.endpoint if request.method == "GET" else "checkout.checkout"
    return url_for(endpoint or "checkout.checkout", **(request.view_args or {}), lang=lang)


def _payment(payment_id: str) -> Payment:
    # Only the unguessable id opens these pages: the API's legacy "payment-<order_id>" ids
    # would let anyone who knows an order number read its payment.
    try:
        key = uuid.UUID(payment_id)
    except ValueError:
        raise PaymentNotFound("Payment not found") from None
    return queries.get_payment(str(key))


@bp.get("/checkout/<payment_id>")
def checkout(payment_id: str) -> Any:
    """Show the order, the traveller's masked details and the button that opens Snap."""
    payment = _payment(payment_id)
    if payment.status in PAID or payment.status is PaymentStatus.CANCELED:
        return redirect(url_for(".receipt", payment_id=payment.id), 303)
    return _render_checkout(payment)


@bp.post("/checkout/<payment_id>/retry")
def retry(payment_id: str) -> Any:
    """Open a fresh attempt at the order and go to its checkout page."""
    payment = _payment(payment_id)
    form = RetryForm()
    if not form.validate_on_submit():
        return _render_checkout(payment, retry_form=form), 400
    fresh = service.retry_payment(payment.id, gateway=current_gateway(), finish_url=finish_url)
    # pay=1: the fresh page opens Snap by itself, so that paying again is the one tap it took.
    return redirect(url_for(".checkout", payment_id=fresh.id, pay=1), 303)


@bp.get("/checkout/<payment_id>/status.json")
def status(payment_id: str) -> Response:
    """Tell the page what is true about the payment, asking Midtrans if not asked lately."""
    payment = _payment(payment_id)
    reconcile.refresh_if_stale(
        payment.id,
        current_gateway(),
        min_interval=timedelta(seconds=current_app.config["STATUS_REFRESH_SECONDS"]),
    )
    response = jsonify(
        status=payment.status.value,
        status_detail=payment.status_detail,
        payment_type=payment.payment_type,
        paid=payment.status in PAID,
        expires_at=payment.expires_at.isoformat(),
        receipt_url=url_for(".receipt", payment_id=payment.id),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/checkout/<payment_id>/finish")
def finish(payment_id: str) -> BaseResponse:
    """Take the traveller from Snap's finish, unfinish or error redirect back to TiketQ.

    Snap appends order_id, status_code and transaction_status; anyone can write those, so
    they decide nothing. The browser goes only to the configured or allow-listed address
    of this payment, or, without one, to its receipt.
    """
    payment = _payment(payment_id)
    back = return_address(payment, current_app.config)
    return redirect(back or url_for(".receipt", payment_id=payment.id), 303)


@bp.get("/receipt/<payment_id>")
def receipt(payment_id: str) -> str:
    """Show what the database knows about the payment, and what to do next if it is open."""
    payment = _payment(payment_id)
    now = utcnow()
    overdue = payment.status in OPEN and payment.is_expired(now)
    can_retry = rules.may_pay_again(payment.status, overdue=overdue)
    wallet = _wallet_steps(payment) if payment.status is PaymentStatus.PENDING else None
    return render_template(
        "checkout/receipt.html",
        payment=payment,
        is_open=payment.status in OPEN,
        overdue=overdue,
        seconds_left=display.seconds_left(payment.expires_at, now),
        wallet=wallet,
        back_url=return_address(payment, current_app.config),
        can_retry=can_retry,
        retry_form=RetryForm(formdata=None) if can_retry else None,
    )


def _wallet_steps(payment: Payment) -> WalletSteps:
    """The QR and app link of a pending wallet payment; lets its QR image past the CSP."""
    origin = core_api_origin(current_app.config)
    steps = wallet_steps(
        payment.payment_type,
        payment.payment_details,
        image_origin=origin,
        qr_title=texts.translator(g.lang)("qr.title"),
    )
    if steps.qr_image_url:
        allow_images_from(origin)
    return steps


def _render_checkout(payment: Payment, *, retry_form: RetryForm | None = None) -> str:
    now = utcnow()
    overdue = payment.status in OPEN and payment.is_expired(now)
    # Midtrans needs none of the traveller's details, so whatever the caller sent is enough.
    payable = payment.status is PaymentStatus.PENDING and not overdue and bool(payment.snap_token)
    config = current_app.config
    return render_template(
        "checkout/checkout.html",
        payment=payment,
        retry_form=retry_form or RetryForm(formdata=None),
        can_pay=payable,
        autopay=payable and request.args.get("pay") == "1",
        can_retry=rules.may_pay_again(payment.status, overdue=overdue),
        overdue=overdue,
        seconds_left=display.seconds_left(payment.expires_at, now),
        snap_js_url=snap_js_url(config),
        client_key=config["MIDTRANS_CLIENT_KEY"],
    )


@bp.errorhandler(PaymentNotFound)
def _not_found(exc: PaymentNotFound) -> tuple[str, int]:
    return render_template(
        "checkout/error.html", title="not_found.title", body="not_found.body"
    ), 404


@bp.errorhandler(PaymentError)
def _conflict(exc: PaymentError) -> tuple[str, int]:
    return render_template("checkout/error.html", title="error.title", body="error.conflict"), 409


@bp.errorhandler(GatewayError)
def _gateway_down(exc: GatewayError) -> tuple[str, int]:
    return render_template("checkout/error.html", title="error.title", body="error.gateway"), 503


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    body = "not_found.body" if code == 404 else "error.body"
    title = "not_found.title" if code == 404 else "error.title"
    return render_template("checkout/error.html", title=title, body=body), code
