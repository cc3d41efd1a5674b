"""Specifications of reading a config: every problem names its place and the fix, before anything runs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, load_config, parse_config
from providers import PROFILES, Bounds

EXAMPLE = str(Path(__file__).resolve().parents[2] / "config.example.yaml")


def refusal(raw: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env or {})
    return str(caught.value)


def small(**models: Any) -> dict[str, Any]:
    """Three providers, every one enabled, and whatever models the test names."""
    return {
        "providers": {
            "deepinfra": {"kind": "deepinfra", "api_key": "di-key"},
            "novita": {"kind": "novita", "api_key": "nv-key"},
            "pool": {"kind": "vllm", "endpoints": ["http://gpu-1:8000/v1"]},
        },
        "models": models,
    }


# --- the example config -----------------------------------------------------------------

POOL = {"VLLM_ENDPOINTS": "http://127.0.0.1:8000/v1,http://127.0.0.1:8001/v1"}


def test_example_config_loads_with_only_some_keys_set() -> None:
    config = load_config(EXAMPLE, env={"DEEPINFRA_TOKEN": "di-key", "NOVITA_API_KEY": "nv-key", **POOL})

    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.workers == 1
    assert config.server.admin_key == ""
    assert config.store.url == "memory://"
    assert config.routing.strategy == "balanced"
    assert config.routing.max_attempts == 3
    assert set(config.providers) == {"mock", "pool", "deepinfra", "novita", "netmind", "deeptrin", "openai"}
    assert config.providers["pool"].base_urls == ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1")
    assert config.providers["pool"].hourly_cost_nano == 2_000_000_000
    assert config.providers["deepinfra"].api_key == "di-key"


def test_example_config_disables_each_keyless_provider_with_one_warning() -> None:
    config = load_config(EXAMPLE, env={"DEEPINFRA_TOKEN": "di-key", "NOVITA_API_KEY": "nv-key", **POOL})

    enabled = {name for name, p in config.providers.items() if p.enabled}
    assert enabled == {"mock", "pool", "deepinfra", "novita"}
    assert list(config.warnings) == [
        "providers.netmind.api_key is empty: provider 'netmind' is disabled until it is set",
        "providers.deeptrin.api_key is empty: provider 'deeptrin' is disabled until it is set",
        "providers.openai.api_key is empty: provider 'openai' is disabled until it is set",
        "models.text-embedding-3-small: served by its stand-in route (mock) until the provider of another of its "
        "routes is enabled",
    ]


def test_example_config_serves_every_model_from_the_mock_with_no_variable_set() -> None:
    config = load_config(EXAMPLE, env={})

    assert {name: [(r.provider, r.model) for r in m.routes] for name, m in config.models.items()} == {
        "llama-3.1-8b": [("mock", "llama-3.1-8b")], "llama-3.3-70b": [("mock", "llama-3.3-70b")],
        "text-embedding-3-small": [("mock", "text-embedding-3-small")]}
    assert config.warnings[0] == ("providers.pool.endpoints names no URL (its variables are unset): provider 'pool' "
                                  "is disabled until one is set")
    assert config.teams["demo"].loopback_key_hashes == (hashlib.sha256(b"sk-gw-demo").hexdigest(),)
    assert config.teams["demo"].key_hashes == ()


def test_the_mock_stand_in_steps_aside_as_soon_as_a_real_route_is_enabled() -> None:
    config = load_config(EXAMPLE, env={"OPENAI_API_KEY": "sk-openai"})

    assert [r.provider for r in config.models["llama-3.3-70b"].routes] == ["openai"]
    assert [r.provider for r in config.models["text-embedding-3-small"].routes] == ["openai"]
    assert [r.provider for r in config.models["llama-3.1-8b"].routes] == ["mock"]


def test_example_config_drops_routes_to_disabled_providers() -> None:
    config = load_config(EXAMPLE, env={"DEEPINFRA_TOKEN": "di-key", "NOVITA_API_KEY": "nv-key", **POOL})

    small_model = config.models["llama-3.1-8b"]
    assert [(r.provider, r.model) for r in small_model.routes] == [
        ("pool", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
        ("deepinfra", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
        ("novita", "meta-llama/llama-3.1-8b-instruct"),
    ]
    big_model = config.models["llama-3.3-70b"]
    assert big_model.strategy == "cost"
    assert [(r.provider, r.model) for r in big_model.routes] == [("deepinfra", "meta-llama/Llama-3.3-70B-Instruct")]


def test_a_model_left_without_routes_is_not_served() -> None:
    config = parse_config({
        "providers": {"novita": {"api_key": "nv-key"}, "deepinfra": {"api_key": "${DEEPINFRA_TOKEN:-}"}},
        "models": {"small": {"routes": [{"provider": "novita", "model": "a"}, {"provider": "deepinfra"}]},
                   "big": {"routes": [{"provider": "deepinfra"}]}}}, {})

    assert set(config.models) == {"small"}
    assert [r.provider for r in config.models["small"].routes] == ["novita"]
    assert list(config.warnings) == [
        "providers.deepinfra.api_key is empty: provider 'deepinfra' is disabled until it is set",
        "models.big: every route's provider is disabled; the model is not served",
    ]


def test_example_config_prices_and_budgets_become_integer_nano_dollars() -> None:
    config = load_config(EXAMPLE, env={"DEEPINFRA_TOKEN": "di-key", **POOL})

    route = config.models["llama-3.3-70b"].routes[0]
    assert (route.price.input_per_mtok_nano, route.price.output_per_mtok_nano) == (130_000_000, 380_000_000)
    cheap = config.models["llama-3.1-8b"].routes[1].price
    assert (cheap.input_per_mtok_nano, cheap.output_per_mtok_nano) == (30_000_000, 50_000_000)
    assert config.models["llama-3.1-8b"].routes[0].price is None
    research = config.teams["research"]
    assert research.limits.budget_day_nano == 50_000_000_000
    assert research.limits.budget_month_nano == 1_000_000_000_000
    assert research.limits.rpm == 600
    assert research.limits.tpm == 200_000
    assert research.models == ("*",)
    assert config.teams["support-bot"].models == ("llama-3.1-8b",)
    assert config.teams["support-bot"].max_tokens_default == 1024
    assert config.teams["support-bot"].limits.budget_day_nano is None


def test_example_config_keeps_a_team_key_only_as_its_hash_and_only_when_set() -> None:
    unset = load_config(EXAMPLE, env={})
    assert unset.teams["research"].key_hashes == ()

    config = load_config(EXAMPLE, env={"RESEARCH_API_KEY": "sk-research-1"})
    assert config.teams["research"].key_hashes == (hashlib.sha256(b"sk-research-1").hexdigest(),)


def test_example_config_takes_server_and_store_settings_from_the_environment() -> None:
    config = load_config(EXAMPLE, env={"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "9090",
                                       "GATEWAY_ADMIN_KEY": "adm", "REDIS_URL": "redis://cache:6379/0",
                                       "VLLM_ENDPOINTS": "http://gpu-7:8000/v1/, http://gpu-8:8000/v1"})

    assert (config.server.host, config.server.port, config.server.admin_key) == ("0.0.0.0", 9090, "adm")
    assert config.store.url == "redis://cache:6379/0"
    assert config.providers["pool"].base_urls == ("http://gpu-7:8000/v1", "http://gpu-8:8000/v1")


def test_a_missing_file_names_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("/nonexistent/gateway.yaml", env={})
    assert str(caught.value).startswith("/nonexistent/gateway.yaml: cannot read the file")


# --- ${VAR} substitution ------------------------------------------------------------------

def test_env_var_is_substituted_inside_a_string() -> None:
    config = parse_config({"providers": {"pool": {"kind": "vllm", "base_url": "http://${GPU_HOST}:8000/v1"}}},
                          {"GPU_HOST": "gpu-9"})
    assert config.providers["pool"].base_urls == ("http://gpu-9:8000/v1",)


def test_unset_env_var_without_default_becomes_empty() -> None:
    config = parse_config({"providers": {"deepinfra": {"api_key": "${DEEPINFRA_TOKEN}"}}}, {})
    assert config.providers["deepinfra"].api_key == ""
    assert config.providers["deepinfra"].enabled is False


def test_env_var_default_applies_when_unset_or_empty_and_yields_to_a_set_value() -> None:
    raw = {"server": {"host": "${HOST:-10.0.0.1}", "port": "${PORT:-8081}"}}
    assert parse_config(raw, {}).server.host == "10.0.0.1"
    assert parse_config(raw, {}).server.port == 8081
    assert parse_config(raw, {"HOST": ""}).server.host == "10.0.0.1"
    assert parse_config(raw, {"HOST": "0.0.0.0", "PORT": "9000"}).server.host == "0.0.0.0"
    assert parse_config(raw, {"HOST": "0.0.0.0", "PORT": "9000"}).server.port == 9000


def test_env_var_value_is_taken_literally_not_substituted_again() -> None:
    config = parse_config({"server": {"admin_key": "${ADMIN}"}}, {"ADMIN": "${OTHER:-x}"})
    assert config.server.admin_key == "${OTHER:-x}"


def test_env_vars_are_substituted_in_lists() -> None:
    config = parse_config({"providers": {"pool": {"kind": "vllm", "endpoints": ["${A}", "${B:-http://b:1/v1}"]}}},
                          {"A": "http://a:1/v1"})
    assert config.providers["pool"].base_urls == ("http://a:1/v1", "http://b:1/v1")


# --- routes and providers --------------------------------------------------------------------

def test_unknown_provider_names_the_place_and_the_known_ones() -> None:
    raw = small(**{"llama-3.1-8b": {"routes": [
        {"provider": "pool", "model": "meta-llama/Meta-Llama-3.1-8B-Instruct"},
        {"provider": "novta", "model": "meta-llama/llama-3.1-8b-instruct"},
    ]}})
    assert refusal(raw) == "models.llama-3.1-8b.routes[1].provider: no provider named 'novta' (known: deepinfra, novita, pool)"


def test_unknown_provider_is_refused_even_when_disabled_providers_are_known() -> None:
    raw = {"providers": {"deepinfra": {"api_key": ""}},
           "models": {"m": {"routes": [{"provider": "deepinfa", "model": "x"}]}}}
    assert refusal(raw) == "models.m.routes[0].provider: no provider named 'deepinfa' (known: deepinfra)"


def test_novita_mixed_case_model_id_is_refused_with_the_lower_case_suggestion() -> None:
    raw = small(**{"llama-3.1-8b": {"routes": [
        {"provider": "novita", "model": "meta-llama/Llama-3.1-8B-Instruct"},
    ]}})
    assert refusal(raw) == ("models.llama-3.1-8b.routes[0].model: novita model ids are lower-case; "
                            "write 'meta-llama/llama-3.1-8b-instruct'")


def test_other_providers_keep_mixed_case_model_ids() -> None:
    config = parse_config(small(m={"routes": [{"provider": "deepinfra", "model": "meta-llama/Llama-3.3-70B-Instruct"}]}),
                          {})
    assert config.models["m"].routes[0].model == "meta-llama/Llama-3.3-70B-Instruct"


def test_a_route_without_a_model_uses_the_public_name() -> None:
    config = parse_config(small(**{"gpt-4o-mini": {"routes": [{"provider": "pool"}]}}), {})
    assert config.models["gpt-4o-mini"].routes[0].model == "gpt-4o-mini"


def test_a_model_without_routes_is_refused() -> None:
    assert refusal(small(m={"routes": []})) == "models.m.routes: a model needs at least one route {provider, model}"


def test_a_provider_of_unknown_kind_names_the_kinds() -> None:
    assert refusal({"providers": {"together": {"api_key": "k"}}}) == (
        "providers.together.kind: 'together' is not one of: openai, netmind, deeptrin, novita, deepinfra, vllm, "
        "netmind-dedicated, mock")


def test_a_vllm_pool_needs_no_api_key() -> None:
    config = parse_config({"providers": {"pool": {"kind": "vllm", "endpoints": ["http://gpu-1:8000/v1"]}}}, {})
    assert config.providers["pool"].enabled is True
    assert config.warnings == ()


def test_a_base_url_must_be_http() -> None:
    assert refusal({"providers": {"pool": {"kind": "vllm", "endpoints": ["gpu-1:8000"]}}}) == (
        "providers.pool.endpoints[0]: 'gpu-1:8000' is not an http(s) URL")


def test_abandoned_streams_default_to_the_profile_and_can_be_set_per_provider() -> None:
    config = parse_config({"providers": {"novita": {"api_key": "k"}, "openai": {"api_key": "k"},
                                         "deepinfra": {"api_key": "k", "abandoned_streams": "finish"}}}, {})
    assert config.providers["novita"].abandoned_streams == "finish"  # Novita bills its 499s anyway
    assert config.providers["openai"].abandoned_streams == "close"
    assert config.providers["deepinfra"].abandoned_streams == "finish"
    assert refusal({"providers": {"openai": {"api_key": "k", "abandoned_streams": "drain"}}}) == (
        "providers.openai.abandoned_streams: 'drain' is not one of: close, finish")


def test_unsupported_params_policy_is_drop_or_reject() -> None:
    config = parse_config({"providers": {"deepinfra": {"api_key": "k", "unsupported_params": "reject"}}}, {})
    assert config.providers["deepinfra"].unsupported_params == "reject"
    assert refusal({"providers": {"deepinfra": {"api_key": "k", "unsupported_params": "ignore"}}}) == (
        "providers.deepinfra.unsupported_params: 'ignore' is not one of: drop, reject")


# --- unknown settings ------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "message"), [
    ({"serverr": {}},
     "serverr: unknown setting (allowed here: models, providers, routing, server, store, teams, upstream)"),
    ({"server": {"wokers": 2}},
     "server.wokers: unknown setting (allowed here: admin_key, body_timeout_s, cors_origins, header_timeout_s, "
     "host, keepalive_timeout_s, log, log_level, max_body_bytes, max_connections, max_output_tokens, port, "
     "shutdown_grace_s, tracing, workers)"),
    ({"providers": {"deepinfra": {"apikey": "k"}}},
     "providers.deepinfra.apikey: unknown setting (allowed here: abandoned_streams, api_key, base_url, "
     "capabilities, endpoints, headers, hourly_cost_usd, kind, limits, max_inflight, max_waiting, timeouts, "
     "unsupported_params)"),
    ({"providers": {"pool": {"kind": "vllm", "timeouts": {"read_s": 3}}}},
     "providers.pool.timeouts.read_s: unknown setting (allowed here: connect_s, first_byte_s, idle_s, total_s)"),
    (small(m={"routes": [{"provider": "pool", "model": "x", "pricing": {}}]}),
     "models.m.routes[0].pricing: unknown setting (allowed here: capabilities, context_window, max_output_tokens, "
     "model, part_tokens, price, provider, stand_in)"),
    (small(m={"routes": [{"provider": "pool", "model": "x", "price": {"input": 1}}]}),
     "models.m.routes[0].price.input: unknown setting (allowed here: input_per_mtok, output_per_mtok)"),
    ({"teams": {"research": {"budget_usd": {"week": 5}}}},
     "teams.research.budget_usd.week: unknown setting (allowed here: day, month)"),
    ({"routing": {"latency": {"half_life_s": 3}}},
     "routing.latency.half_life_s: unknown setting (allowed here: alpha, forget_after_s)"),
    ({"routing": {"circuit": {"threshold": 3}}},
     "routing.circuit.threshold: unknown setting (allowed here: cooldown_s, error_ratio, failures, "
     "min_requests, window_s)"),
])
def test_unknown_settings_name_their_place_and_what_is_allowed(raw: dict[str, Any], message: str) -> None:
    assert refusal(raw) == message


# --- workers and the store ---------------------------------------------------------------

def test_several_workers_with_the_in_process_store_are_refused_with_the_reason() -> None:
    assert refusal({"server": {"workers": 2}}) == (
        "server.workers: 2 workers need a shared store: the in-process store (memory://) holds one worker's "
        "quotas only; set store.url to redis://...")


def test_several_workers_with_redis_are_accepted() -> None:
    config = parse_config({"server": {"workers": 4}, "store": {"url": "${REDIS_URL:-memory://}"}},
                          {"REDIS_URL": "redis://cache:6379/0"})
    assert config.server.workers == 4
    assert config.store.url == "redis://cache:6379/0"


def test_a_store_url_of_unknown_scheme_is_refused() -> None:
    assert refusal({"store": {"url": "postgres://db"}}) == (
        "store.url: unknown scheme 'postgres'; use redis://, rediss://, unix://, redis+sentinel:// or "
        "redis+cluster:// (in 'postgres://db')")


# --- numbers --------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "message"), [
    ({"server": {"port": 70000}}, "server.port: 70000 is out of range [1, 65535]"),
    ({"server": {"port": 0}}, "server.port: 0 is out of range [1, 65535]"),
    ({"server": {"workers": 0}}, "server.workers: 0 is out of range [1, 256]"),
    ({"server": {"max_body_bytes": 10}}, "server.max_body_bytes: 10 is out of range [1024, inf]"),
    ({"store": {"timeout_s": 0}}, "store.timeout_s: 0 is out of range [0.01, 30]"),
    ({"routing": {"max_attempts": 0}}, "routing.max_attempts: 0 is out of range [1, 20]"),
    ({"routing": {"circuit": {"error_ratio": 1.5}}}, "routing.circuit.error_ratio: 1.5 is out of range [0, 1]"),
    ({"routing": {"latency": {"alpha": 0}}}, "routing.latency.alpha: 0 is out of range [0.01, 1]"),
    ({"routing": {"latency": {"forget_after_s": 0.5}}}, "routing.latency.forget_after_s: 0.5 is out of range [1, inf]"),
    ({"teams": {"t": {"rpm": 0}}}, "teams.t.rpm: 0 is out of range [1, inf]"),
    ({"teams": {"t": {"budget_usd": {"day": -1}}}}, "teams.t.budget_usd.day: -1 is out of range [0, inf]"),
    ({"providers": {"pool": {"kind": "vllm", "max_inflight": 0}}},
     "providers.pool.max_inflight: 0 is out of range [1, inf]"),
    (small(m={"routes": [{"provider": "pool", "model": "x", "price": {"input_per_mtok": -0.1}}]}),
     "models.m.routes[0].price.input_per_mtok: -0.1 is out of range [0, inf]"),
])
def test_out_of_range_numbers_name_their_place_and_the_range(raw: dict[str, Any], message: str) -> None:
    assert refusal(raw) == message


@pytest.mark.parametrize(("raw", "message"), [
    ({"server": {"port": "http"}}, "server.port: expected a whole number, got 'http'"),
    ({"server": {"port": True}}, "server.port: expected a whole number, got True"),
    ({"store": {"timeout_s": "fast"}}, "store.timeout_s: expected a number, got 'fast'"),
])
def test_non_numbers_are_refused_with_the_value(raw: dict[str, Any], message: str) -> None:
    assert refusal(raw) == message


def test_a_fractional_value_for_a_whole_number_is_refused_not_truncated() -> None:
    assert refusal({"server": {"port": 8080.5}}) == "server.port: expected a whole number, got 8080.5"


# --- prices ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("usd_per_mtok", "nano"), [
    (0.13, 130_000_000), (0.38, 380_000_000), (0.03, 30_000_000), (0.15, 150_000_000), (0.6, 600_000_000),
    (2, 2_000_000_000), (0, 0), ("0.29", 290_000_000),
])
def test_prices_in_usd_per_mtok_become_exact_integer_nano_dollars(usd_per_mtok: Any, nano: int) -> None:
    config = parse_config(small(m={"routes": [{"provider": "pool", "model": "x",
                                               "price": {"input_per_mtok": usd_per_mtok,
                                                         "output_per_mtok": usd_per_mtok}}]}), {})
    price = config.models["m"].routes[0].price
    assert (price.input_per_mtok_nano, price.output_per_mtok_nano) == (nano, nano)
    assert type(price.input_per_mtok_nano) is int


# --- per-provider limits --------------------------------------------------------------------

def limited(limits: dict[str, Any]) -> Any:
    return parse_config({"providers": {"deepinfra": {"api_key": "k", "limits": limits}}}, {}).providers["deepinfra"]


def test_limits_override_a_range() -> None:
    provider = limited({"temperature": [0, 1.5], "top_k": [None, 50]})
    assert provider.profile.params["temperature"] == Bounds(0, 1.5)
    assert provider.profile.params["top_k"] == Bounds(None, 50)
    assert provider.profile.params["n"] == PROFILES["deepinfra"].params["n"]


def test_limits_true_accepts_any_value_of_a_param() -> None:
    provider = limited({"logit_bias": True})
    assert "logit_bias" in provider.profile.params
    assert provider.profile.params["logit_bias"] is None
    assert "logit_bias" not in PROFILES["deepinfra"].params


def test_limits_false_drops_a_param() -> None:
    provider = limited({"top_k": False})
    assert "top_k" not in provider.profile.params
    assert "top_k" in PROFILES["deepinfra"].params


def test_limits_stop_sets_the_most_stop_sequences() -> None:
    assert limited({"stop": 2}).profile.max_stop == 2
    assert limited({}).profile.max_stop == 16
    assert refusal({"providers": {"deepinfra": {"api_key": "k", "limits": {"stop": 0}}}}) == (
        "providers.deepinfra.limits.stop: 0 is out of range [1, inf]")


def test_limits_do_not_leak_into_other_providers_of_the_same_kind() -> None:
    config = parse_config({"providers": {
        "di-strict": {"kind": "deepinfra", "api_key": "k", "limits": {"temperature": [0, 1]}},
        "di-loose": {"kind": "deepinfra", "api_key": "k"},
    }}, {})
    assert config.providers["di-strict"].profile.params["temperature"] == Bounds(0, 1)
    assert config.providers["di-loose"].profile.params["temperature"] == Bounds(0, 2)


@pytest.mark.parametrize("value", [5, [0], [0, 1, 2], "wide"])
def test_a_limit_of_another_form_is_refused_with_the_forms_allowed(value: Any) -> None:
    assert refusal({"providers": {"deepinfra": {"api_key": "k", "limits": {"temperature": value}}}}) == (
        "providers.deepinfra.limits.temperature: give [low, high] (null for open), true to accept any value, "
        "or false to drop")


# --- values a hand-written check let through ---------------------------------------------------

@pytest.mark.parametrize(("raw", "message"), [
    ({"teams": {"t": {"budget_usd": {"day": float("nan")}}}}, "teams.t.budget_usd.day: expected a finite number, got nan"),
    ({"teams": {"t": {"budget_usd": {"month": float("inf")}}}},
     "teams.t.budget_usd.month: expected a finite number, got inf"),
    (yaml.safe_load("teams: {t: {budget_usd: {day: .nan}}}"), "teams.t.budget_usd.day: expected a finite number, got nan"),
    (yaml.safe_load("teams: {t: {budget_usd: {month: .inf}}}"),
     "teams.t.budget_usd.month: expected a finite number, got inf"),
    ({"routing": {"latency": {"alpha": float("nan")}}}, "routing.latency.alpha: expected a finite number, got nan"),
    ({"routing": {"circuit": {"error_ratio": "inf"}}}, "routing.circuit.error_ratio: expected a finite number, got 'inf'"),
    ({"store": {"timeout_s": True}}, "store.timeout_s: expected a number, got True"),
    ({"teams": {"t": {"budget_usd": {"day": 10_000_000}}}},
     "teams.t.budget_usd.day: 1e+07 USD is more than the store keeps exactly (9,007,199 USD)"),
])
def test_numbers_that_are_not_finite_or_not_storable_are_refused_at_start(raw: dict[str, Any], message: str) -> None:
    assert refusal(raw) == message


@pytest.mark.parametrize(("url", "message"), [
    ("redis://cache/abc",
     "store.url: names database 'abc'; a Redis database is a number, as redis://host:6379/0 (in 'redis://cache/abc')"),
    ("redis://cache:6379?db=two", "store.url: names database 'two'; a Redis database is a number, as "
     "redis://host:6379/0 (in 'redis://cache:6379?db=two')"),
    ("redis://cache:port/0", "store.url: the port of 'cache' is not a number; write host:6379 (in "
     "'redis://cache:port/0')"),
])
def test_a_redis_url_serve_could_not_use_is_refused_by_check_config(url: str, message: str) -> None:
    assert refusal({"store": {"url": url}}) == message


@pytest.mark.parametrize("url", ["redis://cache:6379/3", "redis://cache:6379?db=3", "rediss://u:p@cache:6380/0",
                                 "unix:///run/redis.sock?db=2", "redis://cache"])
def test_redis_urls_of_every_documented_form_are_taken(url: str) -> None:
    assert parse_config({"store": {"url": url}}, {}).store.url == url


def test_a_base_url_with_credentials_is_refused_with_the_fix_and_without_echoing_the_password() -> None:
    message = refusal({"providers": {"p": {"kind": "openai", "api_key": "k",
                                           "base_url": "https://team:hunter2@api.example/v1"}}})
    assert message.startswith("providers.p.base_url: 'https://team:[redacted]@api.example/v1' carries credentials")
    assert "api_key" in message and "hunter2" not in message


def test_a_config_error_never_quotes_a_key_put_in_the_wrong_place() -> None:
    message = refusal({"server": {"port": "${ADMIN}"}}, env={"ADMIN": "sk-live-0123456789abcdef"})
    assert "sk-live" not in message and message.startswith("server.port: expected a whole number")


def test_check_config_shows_the_store_without_its_password() -> None:
    from gateway.cli import describe

    text = describe(parse_config({"store": {"url": "redis://gateway:hunter2@cache:6379/0"}}, {}))
    assert "hunter2" not in text and "one server cache:6379, db 0, as gateway with a password" in text


# --- stand-in routes, pools from one variable, loopback keys -------------------------------------

def stand_in_config(novita_key: str) -> dict[str, Any]:
    return {"providers": {"mock": {}, "novita": {"api_key": novita_key}},
            "models": {"m": {"routes": [{"provider": "novita", "model": "a"},
                                        {"provider": "mock", "stand_in": True}]}}}


def test_a_stand_in_route_is_served_only_while_no_other_route_of_its_model_is() -> None:
    alone = parse_config(stand_in_config(""), {})
    assert [r.provider for r in alone.models["m"].routes] == ["mock"]
    assert alone.warnings[-1] == ("models.m: served by its stand-in route (mock) until the provider of another of "
                                  "its routes is enabled")
    real = parse_config(stand_in_config("nv-key"), {})
    assert [r.provider for r in real.models["m"].routes] == ["novita"]
    assert not any("stand-in" in warning for warning in real.warnings)


def test_a_model_of_stand_ins_only_is_served_without_a_warning() -> None:
    config = parse_config({"providers": {"mock": {}}, "models": {"m": {"routes": [
        {"provider": "mock", "stand_in": True}]}}}, {})
    assert [r.provider for r in config.models["m"].routes] == ["mock"] and config.warnings == ()


def test_stand_in_is_true_or_false() -> None:
    raw = stand_in_config("")
    raw["models"]["m"]["routes"][1]["stand_in"] = "yes"
    assert refusal(raw) == "models.m.routes[1].stand_in: expected true or false, got 'yes'"


@pytest.mark.parametrize(("written", "env", "urls"), [
    ("${POOL}", {"POOL": "http://a:1/v1,http://b:1/v1"}, ("http://a:1/v1", "http://b:1/v1")),
    ("${POOL}", {"POOL": " http://a:1/v1 , "}, ("http://a:1/v1",)),
    (["${A:-}", "http://b:1/v1"], {}, ("http://b:1/v1",)),
])
def test_a_pools_endpoints_may_come_from_one_variable_and_unset_ones_are_left_out(
        written: Any, env: dict[str, str], urls: tuple[str, ...]) -> None:
    config = parse_config({"providers": {"pool": {"kind": "vllm", "endpoints": written}}}, env)
    assert config.providers["pool"].base_urls == urls and config.providers["pool"].enabled


@pytest.mark.parametrize("written", ["${POOL:-}", ["${A:-}", "${B:-}"]])
def test_a_pool_whose_endpoint_variables_are_unset_is_disabled_with_one_warning(written: Any) -> None:
    config = parse_config({"providers": {"pool": {"kind": "vllm", "endpoints": written}},
                           "models": {"m": {"routes": [{"provider": "pool"}]}}}, {})
    assert not config.providers["pool"].enabled and "m" not in config.models
    assert config.warnings == ("providers.pool.endpoints names no URL (its variables are unset): provider 'pool' is "
                               "disabled until one is set", "models.m: every route's provider is disabled; the model "
                               "is not served")


def test_an_endpoints_list_written_empty_is_refused() -> None:
    assert refusal({"providers": {"pool": {"kind": "vllm", "endpoints": []}}}) == (
        "providers.pool.endpoints: empty; list at least one base URL")


def test_loopback_keys_are_kept_as_hashes_and_an_unset_one_is_no_key() -> None:
    config = parse_config({"teams": {"demo": {"loopback_keys": ["sk-gw-demo", "${LOCAL_KEY:-}"]}}}, {})
    assert config.teams["demo"].loopback_key_hashes == (hashlib.sha256(b"sk-gw-demo").hexdigest(),)
    assert config.auth_required


def test_a_key_both_loopback_and_ordinary_is_refused() -> None:
    message = refusal({"teams": {"demo": {"keys": ["${KEY}"], "loopback_keys": ["${KEY}"]}}}, {"KEY": "sk-shared"})
    assert message.startswith("teams.demo.loopback_keys: a key is in both keys and loopback_keys")
    assert "sk-shared" not in message
