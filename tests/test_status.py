"""The status table, without an app."""

import pytest

from tiketq.payments.status import OPEN, PAID, TRANSITIONS, PaymentStatus, can_transition, is_final

S = PaymentStatus
ALLOWED = {
    (S.PENDING, S.PROCESSING),
    (S.PENDING, S.SUCCESS),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.CANCELED),
    (S.PENDING, S.EXPIRED),
    (S.PROCESSING, S.SUCCESS),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.CANCELED),
    (S.PROCESSING, S.EXPIRED),
    (S.SUCCESS, S.REFUNDED),
    (S.FAILED, S.PROCESSING),
    (S.FAILED, S.SUCCESS),
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("new", list(S))
def test_only_reviewed_transitions_are_allowed(current, new):
    assert can_transition(current, new) == ((current, new) in ALLOWED)


def test_nothing_ever_returns_to_pending():
    assert all(S.PENDING not in targets for targets in TRANSITIONS.values())


@pytest.mark.parametrize("status", [S.CANCELED, S.EXPIRED, S.REFUNDED])
def test_ended_statuses_are_final(status):
    assert is_final(status)


def test_public_vocabulary_is_the_one_callers_know():
    assert [s.value for s in S] == [
        "pending",
        "processing",
        "success",
        "failed",
        "canceled",
        "expired",
        "refunded",
    ]


def test_open_and_paid_statuses_do_not_overlap():
    assert not OPEN & PAID
