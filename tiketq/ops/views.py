"""Blueprint: the ops pages for staff, behind a login, rendered on the server."""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from tiketq.formats import rupiah, wib
from tiketq.gateway import GatewayError, GatewayTimeout, GatewayUnavailable
from tiketq.metrics import AUTH_FAILURES
from tiketq.ops import accounts, actions, display, environment, throttle, widgets
from tiketq.ops.forms import ActionForm, CancelForm, LoginForm, RefundForm, ResolveForm, entered
from tiketq.payments import outbox, queries, rules
from tiketq.payments.errors import PaymentError, PaymentNotFound
from tiketq.payments.models import Payment, utcnow

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__, url_prefix="/ops")

SEARCH_MAX_LENGTH = 64
FORM_EXPIRED = "The form expired; go back, reload the page and try again."


def _safe_next(target: str | None) -> str:
    """The ops page to return to after a form, never another site."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or "\\" in (target or "") or not parts.path.startswith("/ops"):
        return url_for(".dashboard")
    return target or url_for(".dashboard")


@bp.before_request
def _require_staff() -> Any:
    if request.endpoint == "ops.login":
        return None
    g.staff = accounts.signed_in(current_app.config)
    if g.staff is None:
        wanted = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for(".login", next=wanted), 303)
    return None


@bp.context_processor
def _page_helpers() -> dict[str, Any]:
    return {
        "mode": environment.mode(current_app.config),
        "mode_meanings": environment.MEANINGS,
        "staff": g.get("staff"),
        "action_form": ActionForm(formdata=None),
        "rupiah": rupiah,
        "wib": wib,
        "percent": display.percent,
        "customer_label": display.customer_label,
    }


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Ask for a name and password; a right pair starts a staff session, unless it is limited."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        return render_template("ops/login.html", form=form)
    if not form.validate_on_submit():
        return render_template("ops/login.html", form=form), 400
    tries = throttle.take(entered(form.name))
    if tries.limited:
        AUTH_FAILURES.labels("ops_login").inc()
        log.warning("ops login limited", extra={"remote_addr": request.remote_addr})
        # No form and nothing about the password, so that the page is the same whatever was typed.
        page = render_template("ops/login.html", limited=True)
        return page, 429, {"Retry-After": str(tries.retry_after)}
    user = accounts.authenticate(current_app.config, entered(form.name), entered(form.password))
    if user is None:
        AUTH_FAILURES.labels("ops_login").inc()
        log.warning("ops login refused", extra={"remote_addr": request.remote_addr})
        return render_template("ops/login.html", form=form, refused=True), 401
    tries.give_back()
    accounts.sign_in(user)
    log.info("ops login", extra={"staff": user.name, "remote_addr": request.remote_addr})
    return redirect(_safe_next(form.next.data), 303)


@bp.post("/logout")
def logout() -> Response:
    """End the staff session."""
    if ActionForm().validate_on_submit():
        accounts.sign_out()
        flash("Signed out.")
        return redirect(url_for(".login"), 303)
    abort(400, "The form expired; go back, reload the page and try again.")


@bp.get("", strict_slashes=False)
def dashboard() -> str:
    """What is stuck, what failed and what needs a person, on one page."""
    now = utcnow()
    return render_template(
        "ops/dashboard.html",
        age=lambda value: display.age(value, now),
        **widgets.gather(now, current_app.config),
    )


@bp.get("/search")
def search() -> Any:
    """Find payments by order_id, gateway_order_id or payment id; one hit opens it."""
    text = request.args.get("q", "").strip()[:SEARCH_MAX_LENGTH]
    found = queries.search_payments(text) if text else []
    if len(found) == 1:
        return redirect(url_for(".payment", payment_id=found[0].id), 303)
    return render_template("ops/search.html", q=text, found=found)


@bp.get("/payments/<payment_id>")
def payment(payment_id: str) -> str:
    """One payment: its fields, history, notifications, refunds and messages to others."""
    found = queries.get_payment(str(_payment_key(payment_id)))
    now = utcnow()
    refunds = queries.refunds_for(found.id)
    return render_template(
        "ops/payment.html",
        payment=found,
        notifications=queries.notifications_for(found),
        refunds=refunds,
        messages=queries.outbox_for(found.id),
        age=lambda value: display.age(value, now),
        offers=actions.offers(found, refunds),
        review_reasons=queries.open_review_reasons(found.id) if found.needs_review else [],
        resolve_form=ResolveForm(formdata=None),
        cancel_form=CancelForm(formdata=None),
        refund_form=RefundForm(formdata=None),
    )


@bp.post("/deliveries/<int:delivery_id>/resend")
def resend(delivery_id: int) -> Response:
    """Queue a delivery (usually a dead letter) for another attempt now."""
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form expired; go back, reload the page and try again.")
    delivery = outbox.resend(delivery_id)
    if delivery is None:
        abort(404, f"There is no delivery {delivery_id}.")
    log.info("delivery resent", extra={"delivery_id": delivery_id, "staff": g.staff.name})
    flash(f"Delivery {delivery_id} to {delivery.destination} is queued for another attempt.")
    return redirect(_safe_next(form.next.data), 303)


@bp.post("/payments/<payment_id>/check")
def check(payment_id: str) -> Response:
    """Ask Midtrans about the payment now and apply its answer, as the worker would."""
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, FORM_EXPIRED)
    key = _payment_key(payment_id)
    try:
        checked = actions.check(key, staff=g.staff.name)
    except GatewayError as exc:
        flash(f"Midtrans did not answer ({exc.detail}); nothing changed. Try again shortly.")
        return _back_to(key)
    log.info("payment checked", extra={"payment_id": payment_id, "staff": g.staff.name})
    flash(f"Midtrans was asked: the payment is {checked.status}.")
    return _back_to(key)


@bp.post("/payments/<payment_id>/review/resolve")
def resolve_review(payment_id: str) -> Response:
    """Close the payment's open review with a note saying what was done about it."""
    key = _payment_key(payment_id)
    form = ResolveForm()
    if not _accepted(form):
        return _back_to(key)
    try:
        reasons = actions.resolve_review(key, staff=g.staff.name, note=entered(form.note))
    except actions.Refused as exc:
        flash(str(exc))
        return _back_to(key)
    log.info(
        "review resolved",
        extra={"payment_id": payment_id, "staff": g.staff.name, "reasons": reasons},
    )
    flash("The review is resolved; the note is in the history.")
    return _back_to(key)


@bp.post("/payments/<payment_id>/cancel")
def cancel(payment_id: str) -> Response | str:
    """Show what a cancel would cancel; once confirmed, cancel at Midtrans and here."""
    key = _payment_key(payment_id)
    form = CancelForm()
    if not _accepted(form):
        return _back_to(key)
    payment = queries.get_payment(str(key))
    try:
        actions.plan_cancel(payment)
    except PaymentError as exc:
        flash(f"Not canceled: {exc.detail}.")
        return _back_to(key)
    if form.confirmed.data != "yes":
        form.confirmed.data = "yes"
        return _confirm_cancel(payment, form)
    what = f"The payment of {rupiah(payment.amount)} for order {payment.order_id}"
    try:
        actions.cancel(key, staff=g.staff.name, reason=form.reason.data or None)
    except PaymentError as exc:
        flash(f"Not canceled: {exc.detail}.")
    except (GatewayUnavailable, GatewayTimeout) as exc:
        flash(
            f"Midtrans did not answer ({exc.detail}); nothing was canceled here. Check with "
            "Midtrans now, then try again."
        )
    except GatewayError as exc:
        flash(f"Midtrans refused to cancel ({_said(exc)}); nothing was canceled.")
    else:
        log.info(
            "payment canceled by staff", extra={"payment_id": payment_id, "staff": g.staff.name}
        )
        flash(f"{what} is canceled.")
    return _back_to(key)


@bp.post("/payments/<payment_id>/refund")
def refund(payment_id: str) -> Response | str | tuple[str, int]:
    """Show the amount a refund would take; once confirmed, refund it, once however often sent."""
    key = _payment_key(payment_id)
    form = RefundForm()
    if not _accepted(form):
        return _back_to(key)
    payment = queries.get_payment(str(key))
    amount = form.amount.data
    # Staff confirm the amount they were shown: a confirmation without one (no page sends that)
    # shows the amount first.
    if not form.key.data or amount is None:
        try:
            amount = form.amount.data = actions.plan_refund(payment, amount)
        except PaymentError as exc:
            flash(f"Not refunded: {exc.detail}.")
            return _back_to(key)
        form.key.data = uuid.uuid4().hex
        return _confirm_refund(payment, form, amount)
    try:
        done = actions.refund(
            key,
            staff=g.staff.name,
            amount=amount,
            reason=entered(form.reason),
            key=form.key.data,
        )
    except (PaymentError, actions.Refused) as exc:
        flash(f"Not refunded: {_said(exc)}.")
    except (GatewayUnavailable, GatewayTimeout) as exc:
        # The refund is stored as requested: this same confirmation retries it, and refunds once.
        flash(
            f"Midtrans did not answer ({exc.detail}); the refund of {rupiah(amount)} "
            "is stored as requested and not known to be made. Confirm again to retry it: it "
            "cannot refund twice."
        )
        return _confirm_refund(payment, form, amount), 503
    except GatewayError as exc:
        flash(f"Midtrans refused the refund ({_said(exc)}); nothing was refunded.")
    else:
        _refunded(payment, done)
    return _back_to(key)


def _payment_key(payment_id: str) -> uuid.UUID:
    """The payment id in the address, or the 404 page for one that cannot be an id."""
    try:
        return uuid.UUID(payment_id)
    except ValueError:
        raise PaymentNotFound("Payment not found") from None


def _back_to(key: uuid.UUID) -> Response:
    return redirect(url_for(".payment", payment_id=key), 303)


def _accepted(form: FlaskForm) -> bool:
    """Validate a posted form: a bad CSRF token refuses it; a wrong field is flashed."""
    if form.validate_on_submit():
        return True
    if "csrf_token" in form.errors:
        abort(400, FORM_EXPIRED)
    for messages in form.errors.values():
        for message in messages:
            flash(message)
    return False


def _said(exc: Exception) -> str:
    """What a refusal says, in its own words (Midtrans's messages when it gave some)."""
    if isinstance(exc, GatewayError):
        return "; ".join(exc.messages) or exc.detail
    return exc.detail if isinstance(exc, PaymentError) else str(exc).rstrip(".")


def _confirm_cancel(payment: Payment, form: CancelForm) -> str:
    return render_template(
        "ops/confirm.html",
        payment=payment,
        form=form,
        question=f"Cancel the payment of {rupiah(payment.amount)} for order {payment.order_id}?",
        details=[
            ("Attempt", f"{payment.attempt} · {payment.status}"),
            ("Amount", rupiah(payment.amount)),
            ("Reason", form.reason.data or "none given"),
        ],
        note="Midtrans is asked first: if the traveller has paid meanwhile, nothing is canceled.",
        action=url_for(".cancel", payment_id=payment.id),
        button="Cancel the payment",
    )


def _confirm_refund(payment: Payment, form: RefundForm, amount: int) -> str:
    late = payment.status_detail if rules.paid_late(payment.status, payment.status_detail) else None
    return render_template(
        "ops/confirm.html",
        payment=payment,
        form=form,
        question=f"Refund {rupiah(amount)} of order {payment.order_id}?",
        details=[
            ("Attempt", f"{payment.attempt} · {payment.status}"),
            ("Paid", f"{rupiah(payment.amount)} by {payment.payment_type or 'a method not known'}"),
            ("Refunded before", rupiah(payment.refunded_amount)),
            ("This refund", rupiah(amount)),
            ("Left after it", rupiah(payment.amount - payment.refunded_amount - amount)),
            ("Reason", form.reason.data),
        ],
        note=(
            f"This attempt was {late.replace('_', ' ')}: the refund returns that money and the "
            f"attempt stays {payment.status}. The order's other attempts are not touched."
            if late
            else None
        ),
        action=url_for(".refund", payment_id=payment.id),
        button=f"Refund {rupiah(amount)}",
    )


def _refunded(payment: Payment, done: actions.RefundDone) -> None:
    amount = rupiah(done.refund.amount)
    if done.repeated:
        flash(f"This refund was already made ({amount}); nothing more was refunded.")
        return
    log.info(
        "payment refunded by staff",
        extra={"payment_id": str(payment.id), "staff": g.staff.name, "amount": done.refund.amount},
    )
    flash(f"Refunded {amount} of order {payment.order_id}.")


@bp.errorhandler(PaymentNotFound)
def _not_found(exc: PaymentNotFound) -> tuple[str, int]:
    return render_template("ops/error.html", code=404, message="There is no such payment."), 404


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    return render_template("ops/error.html", code=code, message=exc.description), code
