"""Specifications of a `mock` provider's settings: written flat in its entry, checked with the fix named."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config


def mock(**settings: Any) -> Any:
    return parse_config({"providers": {"fake": {"kind": "mock", **settings}}}, {}).providers["fake"]


def refusal(**settings: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        mock(**settings)
    return str(caught.value)


def test_a_mock_needs_nothing_and_answers_at_once_without_errors() -> None:
    provider = mock()
    assert provider.enabled and provider.mock is not None
    assert (provider.mock.latency.first_token_s, provider.mock.latency.per_token_s) == (0, 0)
    assert provider.mock.error_rate == 0 and provider.mock.answer_tokens == 16


def test_its_settings_are_read_from_the_entry() -> None:
    provider = mock(latency={"first_token_s": "0.5", "per_token_s": 0.02}, error_rate=0.1,
                    error_statuses=[429], answer_tokens=200, embedding_dimensions=1536)
    settings = provider.mock
    assert (settings.latency.first_token_s, settings.latency.per_token_s) == (0.5, 0.02)
    assert (settings.error_rate, settings.error_statuses, settings.answer_tokens) == (0.1, (429,), 200)
    assert settings.embedding_dimensions == 1536


@pytest.mark.parametrize(("settings", "message"), [
    ({"error_rate": 1.5}, "providers.fake.error_rate: 1.5 is out of range [0, 1]"),
    ({"error_rate": "often"}, "providers.fake.error_rate: expected a number, got 'often'"),
    ({"latency": {"first_token_s": -1}}, "providers.fake.latency.first_token_s: -1 is out of range [0, 600]"),
    ({"latency": {"per_token": 0.1}}, "providers.fake.latency.per_token: unknown setting (allowed here: "
                                      "first_token_s, per_token_s)"),
    ({"error_statuses": [418]}, "providers.fake.error_statuses[0]: 418 is not one of 429, 500, 502, 503"),
    ({"error_statuses": []}, "providers.fake.error_statuses: empty; list one or more of 429, 500, 502, 503"),
    ({"answer_tokens": 0}, "providers.fake.answer_tokens: 0 is out of range [1, 1e+06]"),
])
def test_a_bad_value_is_refused_naming_its_place_and_the_range(settings: dict[str, Any], message: str) -> None:
    assert refusal(**settings) == message


@pytest.mark.parametrize("setting", ["api_key", "base_url", "endpoints", "hourly_cost_usd", "max_waiting"])
def test_what_a_mock_has_no_use_for_is_an_unknown_setting(setting: str) -> None:
    assert refusal(**{setting: "x"}).startswith(f"providers.fake.{setting}: unknown setting (allowed here: ")


def test_another_kind_does_not_take_the_mocks_settings() -> None:
    with pytest.raises(ConfigError, match=r"providers.p.error_rate: unknown setting"):
        parse_config({"providers": {"p": {"kind": "openai", "api_key": "k", "error_rate": 0.5}}}, {})
