"""The money rules, table by table: no app, no database, no gateway."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tiketq.payments import rules
from tiketq.payments.errors import InvalidOrder, InvalidTransition, PaymentConflict
from tiketq.payments.rules import (
    CREATE_IN_FLIGHT,
    Answer,
    Attempt,
    Charge,
    Facts,
    Reuse,
    Step,
    after_refund,
    decide,
    expiry_hours,
    may_pay_again,
    refund_amount,
    reuse,
)
from tiketq.payments.status import NotificationOutcome, PaymentStatus, StatusDetail

S = PaymentStatus
C = Charge
O = NotificationOutcome  # noqa: E741
D = StatusDetail

AMOUNT = 150_000
GROSS = Decimal("150000.00")  # as Midtrans writes it
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

SUCCEEDED = "payment.succeeded"
FAILED = "payment.failed"
CANCELED = "payment.canceled"
EXPIRED = "payment.expired"
REFUNDED = "payment.refunded"

# What a payment in each status typically carries when an answer arrives.
_USUAL_DETAIL = {S.PROCESSING: D.AUTHORIZED, S.FAILED: D.DENIED}


def facts(status: S, **overrides) -> Facts:
    values = {
        "status": status,
        "amount": AMOUNT,
        "detail": _USUAL_DETAIL.get(status),
        "refunded_amount": AMOUNT if status is S.REFUNDED else 0,
    }
    return Facts(**{**values, **overrides})


def answer(charge: C, **overrides) -> Answer:
    values = {
        "charge": charge,
        "gross_amount": GROSS,
        "payment_type": "credit_card",
        "transaction_id": "3f0f4c2e-0000-4000-8000-000000000001",
        "paid_at": NOW,
        "gateway_status": charge.value,
    }
    return Answer(**{**values, **overrides})


def final_status(before: S, decision) -> S:
    return decision.steps[-1].status if decision.steps else before


def announced(decision) -> tuple[str, ...]:
    return tuple(step.announce for step in decision.steps if step.announce)


# --- decide(): every status against every answer, at the right amount -------------------------


@dataclass(frozen=True)
class Expect:
    outcome: O
    final: S | None = None  # None: the status does not change
    announce: tuple[str, ...] = ()
    review: bool = False


def applied(final: S, *announce: str, review: bool = False) -> Expect:
    return Expect(O.APPLIED, final, announce, review)


DUP = Expect(O.DUPLICATE)
STALE = Expect(O.STALE)
UNSUPPORTED = Expect(O.UNSUPPORTED)
FLAGGED = Expect(O.FLAGGED, review=True)

MATRIX: dict[S, dict[C, Expect]] = {
    S.PENDING: {
        C.AWAITING: DUP,
        C.AUTHORIZED: applied(S.PROCESSING),
        C.HELD_FOR_REVIEW: applied(S.PROCESSING, review=True),
        C.PAID: applied(S.SUCCESS, SUCCEEDED),
        C.DENIED: applied(S.FAILED, FAILED),
        C.FRAUD_DENIED: applied(S.FAILED, FAILED),
        C.FAILED: applied(S.FAILED, FAILED),
        C.CANCELED: applied(S.CANCELED, CANCELED),
        C.EXPIRED: applied(S.EXPIRED, EXPIRED),
        C.REFUNDED: applied(S.REFUNDED, SUCCEEDED, REFUNDED),
        C.PARTIALLY_REFUNDED: applied(S.SUCCESS, SUCCEEDED),
        C.CHARGED_BACK: applied(S.REFUNDED, SUCCEEDED, REFUNDED, review=True),
        C.PARTIALLY_CHARGED_BACK: applied(S.SUCCESS, SUCCEEDED, review=True),
        C.UNKNOWN: UNSUPPORTED,
    },
    S.PROCESSING: {  # authorized: a card hold
        C.AWAITING: STALE,
        C.AUTHORIZED: DUP,
        C.HELD_FOR_REVIEW: applied(S.PROCESSING, review=True),
        C.PAID: applied(S.SUCCESS, SUCCEEDED),
        C.DENIED: applied(S.FAILED, FAILED),
        C.FRAUD_DENIED: applied(S.FAILED, FAILED),
        C.FAILED: applied(S.FAILED, FAILED),
        C.CANCELED: applied(S.CANCELED, CANCELED),
        C.EXPIRED: applied(S.EXPIRED, EXPIRED),
        C.REFUNDED: applied(S.REFUNDED, SUCCEEDED, REFUNDED),
        C.PARTIALLY_REFUNDED: applied(S.SUCCESS, SUCCEEDED),
        C.CHARGED_BACK: applied(S.REFUNDED, SUCCEEDED, REFUNDED, review=True),
        C.PARTIALLY_CHARGED_BACK: applied(S.SUCCESS, SUCCEEDED, review=True),
        C.UNKNOWN: UNSUPPORTED,
    },
    S.SUCCESS: {
        C.AWAITING: STALE,
        C.AUTHORIZED: STALE,
        C.HELD_FOR_REVIEW: STALE,
        C.PAID: DUP,
        C.DENIED: FLAGGED,
        C.FRAUD_DENIED: FLAGGED,
        C.FAILED: FLAGGED,
        C.CANCELED: STALE,
        C.EXPIRED: STALE,
        C.REFUNDED: applied(S.REFUNDED, REFUNDED),
        C.PARTIALLY_REFUNDED: applied(S.SUCCESS),
        C.CHARGED_BACK: applied(S.REFUNDED, REFUNDED, review=True),
        C.PARTIALLY_CHARGED_BACK: applied(S.SUCCESS, review=True),
        C.UNKNOWN: UNSUPPORTED,
    },
    S.FAILED: {  # denied, and no other attempt of the order counts
        C.AWAITING: STALE,
        C.AUTHORIZED: applied(S.PROCESSING),
        C.HELD_FOR_REVIEW: applied(S.PROCESSING, review=True),
        C.PAID: applied(S.SUCCESS, SUCCEEDED),
        C.DENIED: DUP,
        C.FRAUD_DENIED: applied(S.FAILED),
        C.FAILED: applied(S.FAILED),
        C.CANCELED: STALE,
        C.EXPIRED: STALE,
        C.REFUNDED: applied(S.REFUNDED, SUCCEEDED, REFUNDED),
        C.PARTIALLY_REFUNDED: applied(S.SUCCESS, SUCCEEDED),
        C.CHARGED_BACK: applied(S.REFUNDED, SUCCEEDED, REFUNDED, review=True),
        C.PARTIALLY_CHARGED_BACK: applied(S.SUCCESS, SUCCEEDED, review=True),
        C.UNKNOWN: UNSUPPORTED,
    },
    S.CANCELED: {
        C.AWAITING: STALE,
        C.AUTHORIZED: STALE,
        C.HELD_FOR_REVIEW: STALE,
        C.PAID: FLAGGED,
        C.DENIED: STALE,
        C.FRAUD_DENIED: STALE,
        C.FAILED: STALE,
        C.CANCELED: DUP,
        C.EXPIRED: STALE,
        C.REFUNDED: STALE,
        C.PARTIALLY_REFUNDED: FLAGGED,
        C.CHARGED_BACK: STALE,
        C.PARTIALLY_CHARGED_BACK: FLAGGED,
        C.UNKNOWN: UNSUPPORTED,
    },
    S.EXPIRED: {
        C.AWAITING: STALE,
        C.AUTHORIZED: STALE,
        C.HELD_FOR_REVIEW: STALE,
        C.PAID: FLAGGED,
        C.DENIED: STALE,
        C.FRAUD_DENIED: STALE,
        C.FAILED: STALE,
        C.CANCELED: STALE,
        C.EXPIRED: DUP,
        C.REFUNDED: STALE,
        C.PARTIALLY_REFUNDED: FLAGGED,
        C.CHARGED_BACK: STALE,
        C.PARTIALLY_CHARGED_BACK: FLAGGED,
        C.UNKNOWN: UNSUPPORTED,
    },
    S.REFUNDED: {  # the whole amount booked as refunded
        C.AWAITING: STALE,
        C.AUTHORIZED: STALE,
        C.HELD_FOR_REVIEW: STALE,
        C.PAID: STALE,
        C.DENIED: FLAGGED,
        C.FRAUD_DENIED: FLAGGED,
        C.FAILED: FLAGGED,
        C.CANCELED: STALE,
        C.EXPIRED: STALE,
        C.REFUNDED: DUP,
        C.PARTIALLY_REFUNDED: STALE,
        C.CHARGED_BACK: applied(S.REFUNDED, review=True),
        C.PARTIALLY_CHARGED_BACK: STALE,
        C.UNKNOWN: UNSUPPORTED,
    },
}


def test_the_matrix_covers_every_status_and_every_answer():
    assert set(MATRIX) == set(S)
    assert all(set(row) == set(C) for row in MATRIX.values())


@pytest.mark.parametrize(
    ("status", "charge", "expect"),
    [
        pytest.param(status, charge, expect, id=f"{status}-{charge}")
        for status, row in MATRIX.items()
        for charge, expect in row.items()
    ],
)
def test_gateway_answer_moves_payment_as_the_table_says(status, charge, expect):
    decision = decide(facts(status), answer(charge))

    assert decision.outcome is expect.outcome
    assert final_status(status, decision) is (expect.final or status)
    assert announced(decision) == expect.announce
    assert any(step.review for step in decision.steps) is expect.review
    if expect.outcome is not O.APPLIED:
        assert not any(step.paid for step in decision.steps)
    if expect.outcome in (O.DUPLICATE, O.STALE, O.UNSUPPORTED):
        assert decision.steps == ()
    # What the traveller needs to pay (a VA number) comes with a pending answer that changes
    # nothing; an answer the payment cannot follow leaves its details alone.
    assert decision.keep_details is (expect.outcome in (O.APPLIED, O.DUPLICATE))


# --- decide(): the notable rules, step by step ------------------------------------------------


@pytest.mark.parametrize("status", [S.PENDING, S.PROCESSING, S.FAILED])
def test_captured_card_held_by_fraud_check_is_processing_under_review_never_success(status):
    decision = decide(facts(status), answer(C.HELD_FOR_REVIEW, gateway_status="capture/challenge"))

    assert decision.steps == (Step(S.PROCESSING, D.FRAUD_CHALLENGE, review=True),)
    assert not decision.steps[0].paid


@pytest.mark.parametrize("status", [S.PENDING, S.PROCESSING])
def test_refund_that_overtakes_its_settlement_books_the_payment_then_the_refund(status):
    decision = decide(facts(status), answer(C.REFUNDED))

    assert decision.outcome is O.APPLIED
    assert decision.steps == (
        Step(S.SUCCESS, announce=SUCCEEDED, paid=True),
        Step(S.REFUNDED, announce=REFUNDED),
    )
    assert decision.refunded_amount == AMOUNT


def test_chargeback_that_overtakes_its_settlement_books_the_payment_then_the_chargeback():
    decision = decide(facts(S.PENDING), answer(C.CHARGED_BACK))

    assert decision.steps == (
        Step(S.SUCCESS, announce=SUCCEEDED, paid=True),
        Step(S.REFUNDED, D.CHARGEBACK, review=True, announce=REFUNDED),
    )
    assert decision.refunded_amount == AMOUNT


@pytest.mark.parametrize(
    "detail", [D.DENIED, D.FRAUD_DENIED, D.FAILURE], ids=lambda d: f"failed-{d}"
)
def test_failed_attempt_may_still_be_paid_on_the_same_snap_page(detail):
    decision = decide(facts(S.FAILED, detail=detail), answer(C.PAID))

    assert decision.outcome is O.APPLIED
    assert decision.steps == (Step(S.SUCCESS, announce=SUCCEEDED, paid=True),)


@pytest.mark.parametrize(
    "charge", [C.PAID, C.PARTIALLY_REFUNDED, C.PARTIALLY_CHARGED_BACK], ids=lambda c: c.value
)
def test_money_on_a_failed_attempt_while_another_attempt_counts_is_flagged_paid_twice(charge):
    decision = decide(facts(S.FAILED, other_attempt_counts=True), answer(charge))

    assert decision.outcome is O.FLAGGED
    assert decision.reason == D.PAID_TWICE
    assert decision.steps == (
        Step(S.FAILED, D.PAID_TWICE, review=True, data={"needs_refund": True}),
    )
    assert decision.keep_details is False


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        pytest.param(S.CANCELED, D.PAID_AFTER_CANCEL, id="canceled"),
        pytest.param(S.EXPIRED, D.PAID_AFTER_EXPIRY, id="expired"),
    ],
)
def test_money_after_cancel_or_expiry_is_flagged_for_a_refund_and_status_kept(status, reason):
    decision = decide(facts(status), answer(C.PAID))

    assert decision.outcome is O.FLAGGED
    assert decision.reason == reason
    assert decision.steps == (Step(status, reason, review=True, data={"needs_refund": True}),)
    assert decision.refunded_amount is None


def test_other_attempts_do_not_matter_to_money_after_a_cancel():
    decision = decide(facts(S.CANCELED, other_attempt_counts=True), answer(C.PAID))

    assert decision.reason == D.PAID_AFTER_CANCEL


@pytest.mark.parametrize(
    "charge", [C.DENIED, C.FRAUD_DENIED, C.FAILED], ids=lambda c: f"success-then-{c}"
)
def test_settlement_reversed_after_success_is_flagged_and_stays_success(charge):
    decision = decide(facts(S.SUCCESS), answer(charge))

    assert decision.outcome is O.FLAGGED
    assert decision.reason == D.REVERSED_AFTER_SETTLEMENT
    assert decision.steps == (Step(S.SUCCESS, D.REVERSED_AFTER_SETTLEMENT, review=True),)


@pytest.mark.parametrize("status", list(S))
def test_unknown_gateway_state_is_unsupported_and_changes_nothing(status):
    decision = decide(facts(status), answer(C.UNKNOWN, gateway_status="bogus"))

    assert decision.outcome is O.UNSUPPORTED
    assert decision.steps == ()
    assert "'bogus'" in (decision.reason or "")
    assert decision.refunded_amount is None


@pytest.mark.parametrize(
    ("status", "detail", "charge"),
    [
        pytest.param(S.PENDING, None, C.AWAITING, id="pending-awaiting"),
        pytest.param(S.PENDING, D.CREATING, C.AWAITING, id="pending-creating-awaiting"),
        pytest.param(S.PROCESSING, D.FRAUD_CHALLENGE, C.HELD_FOR_REVIEW, id="held-again"),
        pytest.param(S.SUCCESS, None, C.PAID, id="settled-again"),
        pytest.param(S.FAILED, D.FRAUD_DENIED, C.FRAUD_DENIED, id="fraud-denied-again"),
        pytest.param(S.CANCELED, None, C.CANCELED, id="canceled-again"),
    ],
)
def test_same_status_and_detail_again_is_a_duplicate_with_no_steps(status, detail, charge):
    decision = decide(facts(status, detail=detail), answer(charge))

    assert decision.outcome is O.DUPLICATE
    assert decision.steps == ()
    assert decision.refunded_amount is None


def test_a_new_detail_on_the_same_status_is_recorded_without_announcing():
    decision = decide(facts(S.FAILED, detail=D.DENIED), answer(C.FRAUD_DENIED))

    assert decision.outcome is O.APPLIED
    assert decision.steps == (Step(S.FAILED, D.FRAUD_DENIED),)


# --- decide(): amounts, fees and currency -------------------------------------------------------


def test_fee_added_by_the_gateway_is_not_a_mismatch_when_the_original_amount_fits():
    decision = decide(
        facts(S.PENDING),
        answer(C.PAID, gross_amount=Decimal("154000.00"), original_amount=GROSS),
    )

    assert decision.outcome is O.APPLIED
    assert decision.steps == (Step(S.SUCCESS, announce=SUCCEEDED, paid=True),)


def test_gross_below_the_amount_is_a_mismatch_even_when_the_original_amount_fits():
    decision = decide(
        facts(S.PENDING),
        answer(C.PAID, gross_amount=Decimal("140000.00"), original_amount=GROSS),
    )

    assert decision.outcome is O.AMOUNT_MISMATCH
    assert all(step.status is not S.SUCCESS for step in decision.steps)


def test_a_different_gross_without_original_amount_holds_a_pending_payment_for_review():
    decision = decide(facts(S.PENDING), answer(C.PAID, gross_amount=Decimal("154000.00")))

    assert decision.outcome is O.AMOUNT_MISMATCH
    assert decision.steps == (
        Step(
            S.PROCESSING,
            D.AMOUNT_MISMATCH,
            review=True,
            data={"gross_amount": "154000.00", "currency": "IDR"},
        ),
    )
    assert decision.reason == "154000.00 IDR != 150000"
    assert decision.keep_details is False


@pytest.mark.parametrize(
    ("status", "charge"),
    [
        pytest.param(S.PENDING, C.AWAITING, id="pending-awaiting"),
        pytest.param(S.PENDING, C.CANCELED, id="pending-canceled"),
        pytest.param(S.PROCESSING, C.PAID, id="processing-paid"),
        pytest.param(S.FAILED, C.PAID, id="failed-paid"),
        pytest.param(S.CANCELED, C.PAID, id="canceled-paid"),
        pytest.param(S.EXPIRED, C.PAID, id="expired-paid"),
        pytest.param(S.SUCCESS, C.REFUNDED, id="success-refunded"),
    ],
)
def test_a_different_gross_annotates_the_payment_where_it_is_and_never_pays(status, charge):
    decision = decide(facts(status), answer(charge, gross_amount=Decimal("149000.00")))

    assert decision.outcome is O.AMOUNT_MISMATCH
    (step,) = decision.steps
    assert (step.status, step.detail, step.review) == (status, D.AMOUNT_MISMATCH, True)
    assert not step.paid and step.announce is None
    assert decision.refunded_amount is None


@pytest.mark.parametrize(
    "gross",
    [
        pytest.param(Decimal("150000.50"), id="fraction-above"),
        pytest.param(Decimal("149999.99"), id="fraction-below"),
        pytest.param(Decimal("1500000.00"), id="ten-times"),
    ],
)
def test_an_amount_off_by_any_fraction_is_a_mismatch(gross):
    decision = decide(facts(S.PENDING), answer(C.PAID, gross_amount=gross))

    assert decision.outcome is O.AMOUNT_MISMATCH
    assert decision.steps[0].status is S.PROCESSING


@pytest.mark.parametrize("gross", [Decimal("150000"), GROSS, Decimal("150000.000")], ids=str)
def test_the_same_amount_written_any_way_is_not_a_mismatch(gross):
    assert decide(facts(S.PENDING), answer(C.PAID, gross_amount=gross)).outcome is O.APPLIED


@pytest.mark.parametrize("currency", ["USD", "SGD", ""], ids=repr)
def test_a_currency_other_than_rupiah_is_a_mismatch(currency):
    decision = decide(facts(S.PENDING), answer(C.PAID, currency=currency))

    assert decision.outcome is O.AMOUNT_MISMATCH
    assert decision.steps[0].status is S.PROCESSING
    assert decision.steps[0].data == {"gross_amount": "150000.00", "currency": currency}


def test_an_answer_without_a_currency_is_taken_as_rupiah():
    assert decide(facts(S.PENDING), answer(C.PAID, currency=None)).outcome is O.APPLIED


# --- decide(): partial refunds and chargebacks --------------------------------------------------


def test_partial_refund_on_a_paid_payment_books_the_refunded_total():
    decision = decide(facts(S.SUCCESS), answer(C.PARTIALLY_REFUNDED, refunded=Decimal("50000.00")))

    assert decision.outcome is O.APPLIED
    assert decision.reason == D.PARTIAL_REFUND
    assert decision.steps == (Step(S.SUCCESS, D.PARTIAL_REFUND),)
    assert decision.refunded_amount == 50_000


@pytest.mark.parametrize(
    ("booked", "answered", "outcome", "total"),
    [
        pytest.param(50_000, "50000.00", O.DUPLICATE, None, id="same-total-again"),
        pytest.param(50_000, "80000.00", O.APPLIED, 80_000, id="larger-total-later"),
        pytest.param(50_000, "30000.00", O.DUPLICATE, None, id="smaller-total-never-lowers"),
        pytest.param(50_000, "150000.00", O.APPLIED, AMOUNT, id="up-to-the-amount"),
        pytest.param(50_000, "999999.00", O.APPLIED, AMOUNT, id="capped-at-the-amount"),
    ],
)
def test_partial_refund_totals_only_grow_up_to_the_amount(booked, answered, outcome, total):
    decision = decide(
        facts(S.SUCCESS, detail=D.PARTIAL_REFUND, refunded_amount=booked),
        answer(C.PARTIALLY_REFUNDED, refunded=Decimal(answered)),
    )

    assert decision.outcome is outcome
    assert decision.refunded_amount == total
    if outcome is O.APPLIED:
        assert decision.steps == (Step(S.SUCCESS, D.PARTIAL_REFUND),)


def test_partial_refund_overtaking_its_settlement_books_payment_and_refund_total():
    decision = decide(facts(S.PENDING), answer(C.PARTIALLY_REFUNDED, refunded=Decimal("50000.00")))

    assert decision.steps == (Step(S.SUCCESS, D.PARTIAL_REFUND, announce=SUCCEEDED, paid=True),)
    assert decision.refunded_amount == 50_000


@pytest.mark.parametrize(
    ("refunded", "total"),
    [
        pytest.param(None, AMOUNT, id="no-figure-books-the-whole-amount"),
        pytest.param(GROSS, AMOUNT, id="the-whole-amount"),
        pytest.param(Decimal("200000.00"), AMOUNT, id="more-is-capped"),
    ],
)
def test_full_refund_books_the_whole_amount(refunded, total):
    decision = decide(facts(S.SUCCESS), answer(C.REFUNDED, refunded=refunded))

    assert decision.steps == (Step(S.REFUNDED, announce=REFUNDED),)
    assert decision.refunded_amount == total


def test_full_refund_after_partial_refunds_never_books_less_than_booked():
    decision = decide(
        facts(S.SUCCESS, detail=D.PARTIAL_REFUND, refunded_amount=100_000),
        answer(C.REFUNDED, refunded=Decimal("50000.00")),
    )

    assert decision.refunded_amount == 100_000


def test_full_chargeback_refunds_the_payment_and_puts_it_on_review():
    decision = decide(facts(S.SUCCESS), answer(C.CHARGED_BACK))

    assert decision.outcome is O.APPLIED
    assert decision.steps == (Step(S.REFUNDED, D.CHARGEBACK, review=True, announce=REFUNDED),)
    assert decision.refunded_amount == AMOUNT


def test_partial_chargeback_keeps_the_payment_paid_on_review():
    decision = decide(
        facts(S.SUCCESS), answer(C.PARTIALLY_CHARGED_BACK, refunded=Decimal("40000.00"))
    )

    assert decision.outcome is O.APPLIED
    assert decision.steps == (Step(S.SUCCESS, D.PARTIAL_CHARGEBACK, review=True),)
    assert decision.refunded_amount == 40_000


def test_the_same_partial_chargeback_again_is_a_duplicate():
    decision = decide(
        facts(S.SUCCESS, detail=D.PARTIAL_CHARGEBACK, refunded_amount=40_000),
        answer(C.PARTIALLY_CHARGED_BACK, refunded=Decimal("40000.00")),
    )

    assert decision.outcome is O.DUPLICATE
    assert decision.steps == ()


# --- refund_amount() and after_refund() ---------------------------------------------------------


@pytest.mark.parametrize("status", [s for s in S if s is not S.SUCCESS])
def test_only_a_paid_payment_may_be_refunded(status):
    with pytest.raises(InvalidTransition) as raised:
        refund_amount(facts(status), payment_type="credit_card", in_flight=0, requested=None)

    assert (raised.value.current, raised.value.new) == (status, S.REFUNDED)


@pytest.mark.parametrize(
    "payment_type", ["bank_transfer", "echannel", "cstore", "permata", None], ids=repr
)
def test_payment_types_midtrans_cannot_refund_are_refused(payment_type):
    with pytest.raises(PaymentConflict) as raised:
        refund_amount(facts(S.SUCCESS), payment_type=payment_type, in_flight=0, requested=None)

    assert raised.value.errors[0]["field"] == "payment_type"


@pytest.mark.parametrize(
    "payment_type", ["credit_card", "gopay", "shopeepay", "qris", "dana", "ovo"]
)
def test_card_and_wallet_payments_may_be_refunded(payment_type):
    amount = refund_amount(facts(S.SUCCESS), payment_type=payment_type, in_flight=0, requested=None)

    assert amount == AMOUNT


@pytest.mark.parametrize(
    ("refunded", "in_flight", "requested", "expected"),
    [
        pytest.param(0, 0, None, AMOUNT, id="all-by-default"),
        pytest.param(50_000, 0, None, 100_000, id="what-is-left-after-refunds"),
        pytest.param(50_000, 20_000, None, 80_000, id="what-is-left-after-in-flight"),
        pytest.param(0, 0, 1, 1, id="one-rupiah"),
        pytest.param(50_000, 20_000, 80_000, 80_000, id="exactly-what-is-left"),
        pytest.param(0, 0, 30_000, 30_000, id="part-of-it"),
    ],
)
def test_refund_takes_what_is_asked_or_all_that_is_left(refunded, in_flight, requested, expected):
    amount = refund_amount(
        facts(S.SUCCESS, refunded_amount=refunded),
        payment_type="credit_card",
        in_flight=in_flight,
        requested=requested,
    )

    assert amount == expected


@pytest.mark.parametrize(
    ("refunded", "in_flight", "requested"),
    [
        pytest.param(50_000, 20_000, 80_001, id="one-more-than-left"),
        pytest.param(0, 0, AMOUNT + 1, id="more-than-paid"),
        pytest.param(0, 0, 0, id="zero"),
        pytest.param(0, 0, -1_000, id="negative"),
        pytest.param(100_000, 50_000, None, id="nothing-left"),
    ],
)
def test_refund_of_nothing_or_more_than_is_left_is_refused(refunded, in_flight, requested):
    with pytest.raises(InvalidOrder) as raised:
        refund_amount(
            facts(S.SUCCESS, refunded_amount=refunded),
            payment_type="credit_card",
            in_flight=in_flight,
            requested=requested,
        )

    assert raised.value.errors == [{"field": "amount", "remaining": AMOUNT - refunded - in_flight}]


@pytest.mark.parametrize(
    ("refunded", "refund", "step"),
    [
        pytest.param(0, AMOUNT, Step(S.REFUNDED, announce=REFUNDED), id="all-at-once"),
        pytest.param(100_000, 50_000, Step(S.REFUNDED, announce=REFUNDED), id="the-rest"),
        pytest.param(0, 50_000, Step(S.SUCCESS, D.PARTIAL_REFUND), id="part"),
        pytest.param(50_000, 99_999, Step(S.SUCCESS, D.PARTIAL_REFUND), id="one-rupiah-short"),
    ],
)
def test_granted_refund_refunds_the_payment_once_nothing_is_left(refunded, refund, step):
    assert after_refund(facts(S.SUCCESS, refunded_amount=refunded), refund) == step


# --- reuse() --------------------------------------------------------------------------------------


def attempt(**overrides) -> Attempt:
    values = {
        "status": S.PENDING,
        "amount": AMOUNT,
        "has_token": True,
        "created_at": NOW - timedelta(minutes=10),
        "expires_at": NOW + timedelta(hours=24),
    }
    return Attempt(**{**values, **overrides})


@pytest.mark.parametrize("status", [S.SUCCESS, S.REFUNDED])
def test_a_paid_order_is_never_created_again(status):
    with pytest.raises(PaymentConflict, match="already paid"):
        reuse(attempt(status=status), order_id="ORD-1", amount=AMOUNT, now=NOW)


def test_a_paid_order_is_refused_even_when_overdue():
    overdue = attempt(status=S.SUCCESS, expires_at=NOW - timedelta(hours=1))
    with pytest.raises(PaymentConflict):
        reuse(overdue, order_id="ORD-1", amount=AMOUNT, now=NOW)


def test_a_live_attempt_of_another_amount_is_a_conflict():
    with pytest.raises(PaymentConflict) as raised:
        reuse(attempt(), order_id="ORD-1", amount=AMOUNT + 1, now=NOW)

    assert raised.value.errors[0]["live"] == AMOUNT


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"expires_at": NOW}, Reuse.EXPIRE_IT, id="due-exactly-now"),
        pytest.param({"expires_at": NOW - timedelta(seconds=1)}, Reuse.EXPIRE_IT, id="overdue"),
        pytest.param(
            {"expires_at": NOW, "has_token": False}, Reuse.EXPIRE_IT, id="overdue-without-token"
        ),
        pytest.param(
            {"expires_at": NOW + timedelta(microseconds=1)}, Reuse.RETURN_IT, id="just-in-time"
        ),
        pytest.param({"status": S.PROCESSING}, Reuse.RETURN_IT, id="processing-with-token"),
        pytest.param({}, Reuse.RETURN_IT, id="with-token"),
        pytest.param({"has_token": False, "created_at": NOW}, Reuse.WAIT, id="just-created"),
        pytest.param(
            {"has_token": False, "created_at": NOW - CREATE_IN_FLIGHT + timedelta(microseconds=1)},
            Reuse.WAIT,
            id="creating-just-under-the-limit",
        ),
        pytest.param(
            {"has_token": False, "created_at": NOW - CREATE_IN_FLIGHT},
            Reuse.ABANDON_IT,
            id="creating-exactly-the-limit",
        ),
        pytest.param(
            {"has_token": False, "created_at": NOW - timedelta(hours=1)},
            Reuse.ABANDON_IT,
            id="create-died-long-ago",
        ),
    ],
)
def test_a_new_create_reuses_waits_for_or_replaces_the_live_attempt(overrides, expected):
    assert reuse(attempt(**overrides), order_id="ORD-1", amount=AMOUNT, now=NOW) is expected


def test_create_in_flight_outlasts_a_gateway_call():
    assert CREATE_IN_FLIGHT == timedelta(seconds=60)


# --- may_pay_again() and expiry_hours() ---------------------------------------------------------


def _pay_again(status: S, overdue: bool, expected: bool):
    when = "overdue" if overdue else "on-time"
    return pytest.param(
        status, overdue, expected, id=f"{status}-{when}-{'yes' if expected else 'no'}"
    )


@pytest.mark.parametrize(
    ("status", "overdue", "expected"),
    [
        _pay_again(S.FAILED, False, True),
        _pay_again(S.FAILED, True, True),
        _pay_again(S.EXPIRED, False, True),
        _pay_again(S.EXPIRED, True, True),
        _pay_again(S.CANCELED, False, False),
        _pay_again(S.CANCELED, True, False),
        _pay_again(S.PENDING, False, False),
        _pay_again(S.PENDING, True, True),
        _pay_again(S.PROCESSING, False, False),
        _pay_again(S.PROCESSING, True, True),
        _pay_again(S.SUCCESS, False, False),
        _pay_again(S.SUCCESS, True, False),
        _pay_again(S.REFUNDED, False, False),
        _pay_again(S.REFUNDED, True, False),
    ],
)
def test_traveller_may_pay_again_after_an_unpaid_end_but_never_after_cancel(
    status, overdue, expected
):
    assert may_pay_again(status, overdue=overdue) is expected


@pytest.mark.parametrize(
    ("duration", "hours"),
    [
        pytest.param(timedelta(hours=24), 24, id="a-day"),
        pytest.param(timedelta(hours=1), 1, id="an-hour"),
        pytest.param(timedelta(hours=1, minutes=29), 1, id="rounds-down"),
        pytest.param(timedelta(hours=1, minutes=31), 2, id="rounds-up"),
        pytest.param(timedelta(hours=23, minutes=59, seconds=59), 24, id="a-second-short"),
        pytest.param(timedelta(minutes=10), 1, id="at-least-one-hour"),
        pytest.param(timedelta(0), 1, id="none-at-all"),
        pytest.param(timedelta(hours=-3), 1, id="backwards"),
    ],
)
def test_next_attempt_gets_the_same_time_to_pay_in_whole_hours(duration, hours):
    assert expiry_hours(NOW, NOW + duration) == hours


# --- purity -------------------------------------------------------------------------------------

_ALLOWED_LOCAL = {"tiketq.payments.status", "tiketq.payments.errors"}


@pytest.mark.parametrize("module", ["rules.py", "status.py"])
def test_money_rules_import_only_the_standard_library_and_the_vocabulary(module):
    source = Path(rules.__file__).with_name(module)
    tree = ast.parse(source.read_text(), filename=str(source))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in {module}"
            imported.add(node.module or "")

    foreign = {
        name
        for name in imported
        if name not in _ALLOWED_LOCAL and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert not foreign, f"{module} imports {sorted(foreign)}"
    assert imported, "the parse found no imports at all"


@pytest.mark.parametrize(
    ("status", "detail", "late"),
    [
        (PaymentStatus.EXPIRED, StatusDetail.PAID_AFTER_EXPIRY, True),
        (PaymentStatus.CANCELED, StatusDetail.PAID_AFTER_CANCEL, True),
        (PaymentStatus.FAILED, StatusDetail.PAID_TWICE, True),
        (PaymentStatus.SUCCESS, StatusDetail.PAID_TWICE, False),
        (PaymentStatus.EXPIRED, StatusDetail.EXPIRED_BY_WORKER, False),
    ],
)
def test_money_taken_after_an_attempt_ended_unpaid_is_judged_as_settled_for_a_refund(
    status, detail, late
):
    facts = rules.Facts(status=status, amount=150_000, detail=detail)

    assert rules.paid_late(status, detail) is late
    assert rules.refund_facts(facts).status is (PaymentStatus.SUCCESS if late else status)


def test_the_echo_of_a_refund_staff_made_of_a_paid_twice_attempt_reopens_no_review():
    refunded_by_staff = facts(
        S.FAILED, detail=D.PAID_TWICE, refunded_amount=AMOUNT, other_attempt_counts=True
    )

    decision = rules.decide(refunded_by_staff, answer(C.REFUNDED, refunded=AMOUNT))

    assert decision.outcome is NotificationOutcome.DUPLICATE and decision.steps == ()


def test_a_refund_of_a_paid_twice_attempt_nobody_made_here_is_still_flagged():
    nobody_refunded = facts(S.FAILED, detail=D.PAID_TWICE, other_attempt_counts=True)

    decision = rules.decide(nobody_refunded, answer(C.REFUNDED, refunded=AMOUNT))

    assert decision.outcome is NotificationOutcome.FLAGGED
