"""Order rules: ids, attempts and item lines, without an app."""

import pytest

from tiketq.gateway import LineItem
from tiketq.payments.errors import InvalidOrder
from tiketq.payments.orders import ItemLine, gateway_order_id, is_valid_order_id, normalise_items


@pytest.mark.parametrize("order_id", ["ORD-1A2B3C4D", "a_b~c.d-e", "X" * 50])
def test_midtrans_safe_order_ids_are_valid(order_id):
    assert is_valid_order_id(order_id)


@pytest.mark.parametrize(
    "order_id",
    [
        "",
        "X" * 51,
        "ORD 1",
        "ORD#1",
        "ORD/1",
        "' OR 1=1--",
        "ORD-1\n",
        "ÖRD-1",
        "x'; DROP TABLE payments;--",
    ],
)
def test_unsafe_order_ids_are_invalid(order_id):
    assert not is_valid_order_id(order_id)


def test_first_attempt_uses_the_order_id_itself():
    assert gateway_order_id("ORD-1", 1) == "ORD-1"


def test_later_attempts_get_a_suffix_that_stays_within_fifty_characters():
    assert gateway_order_id("ORD-1", 2) == "ORD-1~2"
    long_id = "L" * 50
    suffixed = gateway_order_id(long_id, 12)
    assert len(suffixed) == 50 and suffixed.endswith("~12") and is_valid_order_id(suffixed)


def test_transaction_service_payload_is_normalised_to_midtrans_items():
    lines = [
        ItemLine(id="ORD-1", name="Jakarta - Bali, 2 adults", price=1_200_000, quantity=1),
        ItemLine(id="ORD-1", name="Baggage 20 kg", price=50_000, quantity=2),
        ItemLine(id="ORD-1", name="Tax and discount", price=0, quantity=1),
    ]
    items = normalise_items("ORD-1", 1_300_000, lines)
    assert items == (
        LineItem(id="ORD-1", name="Jakarta - Bali, 2 adults", price=1_200_000, quantity=1),
        LineItem(id="ORD-1-2", name="Baggage 20 kg", price=50_000, quantity=2),
    )


def test_negative_discount_line_is_kept():
    lines = [
        ItemLine(id="ORD-1", name="Ferry ticket", price=300_000, quantity=1),
        ItemLine(id="ORD-1", name="Tax and discount", price=-25_000, quantity=1),
    ]
    assert sum(i.price * i.quantity for i in normalise_items("ORD-1", 275_000, lines)) == 275_000


def test_ids_stay_unique_even_when_a_caller_already_used_the_suffix():
    lines = [ItemLine(id=i, name="x", price=1, quantity=1) for i in ("A", "A", "A-2")]
    ids = [i.id for i in normalise_items("O", 3, lines)]
    assert ids == ["A", "A-2", "A-2-2"]


def test_missing_ids_default_to_the_order_id_and_long_names_are_cut():
    items = normalise_items("ORD-9", 10, [ItemLine(name="N" * 80, price=10, quantity=1)])
    assert items[0].id == "ORD-9" and items[0].name == "N" * 50


def test_items_that_do_not_add_up_are_refused_naming_both_sums():
    with pytest.raises(InvalidOrder) as refused:
        normalise_items("ORD-1", 100_000, [ItemLine(name="Train", price=90_000, quantity=1)])
    assert "90000" in refused.value.detail and "100000" in refused.value.detail
    assert refused.value.errors[0]["field"] == "item_details"


def test_no_items_means_no_item_details():
    assert normalise_items("ORD-1", 5_000, []) == ()
