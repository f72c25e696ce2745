"""Blueprint: the ops pages for staff, behind a login, rendered on the server."""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException

from tiketq.checkout.formats import rupiah
from tiketq.gateway import GatewayError, current_gateway
from tiketq.metrics import AUTH_FAILURES
from tiketq.payments import background, queries
from tiketq.payments.errors import PaymentNotFound
from tiketq.payments.models import utcnow
from tiketq.staff import accounts, display, environment, throttle, widgets
from tiketq.staff.forms import ActionForm, LoginForm

log = logging.getLogger(__name__)

bp = Blueprint("staff", __name__, url_prefix="/ops")

SEARCH_MAX_LENGTH = 64


def _safe_next(target: str | None) -> str:
    """The ops page to return to after a form, never another site."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or "\\" in (target or "") or not parts.path.startswith("/ops"):
        return url_for(".dashboard")
    return target or url_for(".dashboard")


@bp.before_request
def _require_staff() -> Any:
    if request.endpoint == "staff.login":
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
        "wib": display.wib,
        "percent": display.percent,
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
    tries = throttle.take(form.name.data)
    if tries.limited:
        AUTH_FAILURES.labels("ops_login").inc()
        log.warning("ops login limited", extra={"remote_addr": request.remote_addr})
        # No form and nothing about the password, so that the page is the same whatever was typed.
        page = render_template("ops/login.html", limited=True)
        return page, 429, {"Retry-After": str(tries.retry_after)}
    user = accounts.authenticate(current_app.config, form.name.data, form.password.data)
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
    try:
        found = queries.get_payment(str(uuid.UUID(payment_id)))
    except ValueError:
        raise PaymentNotFound("Payment not found") from None
    now = utcnow()
    return render_template(
        "ops/payment.html",
        payment=found,
        notifications=queries.notifications_for(found),
        refunds=queries.refunds_for(found.id),
        messages=queries.outbox_for(found.id),
        age=lambda value: display.age(value, now),
    )


@bp.post("/deliveries/<int:delivery_id>/resend")
def resend(delivery_id: int) -> Response:
    """Queue a delivery (usually a dead letter) for another attempt now."""
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form expired; go back, reload the page and try again.")
    delivery = background.resend(delivery_id)
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
        abort(400, "The form expired; go back, reload the page and try again.")
    try:
        key = uuid.UUID(payment_id)
    except ValueError:
        raise PaymentNotFound("Payment not found") from None
    try:
        checked = background.check_now(key, current_gateway())
    except GatewayError as exc:
        flash(f"Midtrans did not answer ({exc.detail}); nothing changed. Try again shortly.")
        return redirect(url_for("staff.payment", payment_id=payment_id), 303)
    if checked is None:
        raise PaymentNotFound("Payment not found")
    log.info("payment checked", extra={"payment_id": payment_id, "staff": g.staff.name})
    flash(f"Midtrans was asked: the payment is {checked.status}.")
    return redirect(url_for("staff.payment", payment_id=payment_id), 303)


@bp.errorhandler(PaymentNotFound)
def _not_found(exc: PaymentNotFound) -> tuple[str, int]:
    return render_template("ops/error.html", code=404, message="There is no such payment."), 404


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    return render_template("ops/error.html", code=code, message=exc.description), code
