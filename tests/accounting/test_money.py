"""Specifications of money: integer nano-dollars, exact from price to report."""

from __future__ import annotations

import pytest

from gateway.money import NANO_PER_USD, nano_to_usd, token_cost, usd_to_nano


@pytest.mark.parametrize(("usd", "nano"), [
    (0.13, 130_000_000), (0.38, 380_000_000), (0.03, 30_000_000), (0.07, 70_000_000), (0.29, 290_000_000),
    (0.57, 570_000_000), (1.1, 1_100_000_000), (4.35, 4_350_000_000), (1000.1, 1_000_100_000_000),
    (2.68e-05, 26_800), (0.0000268, 26_800), (1e-09, 1), (0, 0), (50, 50_000_000_000), ("0.13", 130_000_000),
])
def test_usd_to_nano_avoids_float_artefacts(usd: float | int | str, nano: int) -> None:
    assert usd_to_nano(usd) == nano
    assert type(usd_to_nano(usd)) is int


def test_usd_to_nano_is_exact_for_every_cent_and_tenth_of_a_cent_price() -> None:
    for thousandths in range(0, 100_001, 7):
        assert usd_to_nano(thousandths / 1000) == thousandths * 1_000_000
        assert usd_to_nano(f"{thousandths / 1000}") == thousandths * 1_000_000


@pytest.mark.parametrize(("usd", "nano"), [(5e-10, 1), (1.5e-09, 2), (2.5e-09, 3), ("0.0000000025", 3)])
def test_usd_to_nano_rounds_half_a_nano_dollar_up(usd: float | str, nano: int) -> None:
    assert usd_to_nano(usd) == nano


def test_nano_to_usd_is_the_inverse_for_display() -> None:
    assert nano_to_usd(130_000_000) == 0.13
    assert nano_to_usd(NANO_PER_USD) == 1.0


def test_token_cost_is_exact_for_whole_prices() -> None:
    # $0.13 per Mtok is 130 nano-dollars a token: every token count costs exactly 130 each.
    assert token_cost(1, 130_000_000) == 130
    assert token_cost(15, 130_000_000) == 1_950
    assert token_cost(1_000_000, 130_000_000) == 130_000_000
    assert token_cost(123_457, 380_000_000) == 123_457 * 380
    assert token_cost(0, 380_000_000) == 0


def test_token_cost_rounds_up() -> None:
    assert token_cost(1, 1) == 1  # a billionth of a nano-dollar still costs one
    assert token_cost(1, 1_500_000) == 2  # $0.0015 / Mtok: 1.5 nano a token
    assert token_cost(3, 333_333) == 1  # 0.999999 nano
    assert token_cost(1_000_001, 1_000_000) == 1_000_001
    assert token_cost(7, 142_857_143) == 1_001  # 1000.000001 nano


def test_token_costs_add_up_exactly() -> None:
    price = usd_to_nano(0.13)
    assert sum(token_cost(1, price) for _ in range(1_000)) == token_cost(1_000, price) == 130_000
