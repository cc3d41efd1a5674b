"""Reading a YAML config file into a validated `Config`.

Every problem is reported with its place in the file (`models.x.routes[1].provider`)
and what would fix it, before anything starts.
"""

from __future__ import annotations

import hashlib
import os
import re
from types import MappingProxyType
from typing import Any

import yaml

from gateway.config import (
    CircuitConfig,
    Config,
    ConfigError,
    LatencyConfig,
    ModelConfig,
    Price,
    ProviderConfig,
    RouteConfig,
    RoutingConfig,
    ServerConfig,
    StoreConfig,
    TeamConfig,
    Timeouts,
)
from gateway.config_dedicated import dedicated_settings
from gateway.config_values import (
    choice_problem,
    expect_list,
    expect_mapping,
    no_unknown,
    read_choice,
    read_float,
    read_int,
    read_opt_int,
    read_str,
    read_url,
)
from gateway.money import usd_to_nano
from gateway.store import Limits
from providers import PROFILES, Bounds, netmind_dedicated

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
STRATEGIES = ("balanced", "cost", "latency", "ordered")


def hash_key(key: str) -> str:
    """The only form in which an API key is ever kept."""
    return hashlib.sha256(key.encode()).hexdigest()


def load_config(path: str, env: dict[str, str] | None = None) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(path, f"cannot read the file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML: {exc}") from None
    return parse_config(raw or {}, os.environ if env is None else env)


def parse_config(raw: Any, env: Any) -> Config:
    doc = _substitute(raw, env)
    expect_mapping(doc, "")
    no_unknown(doc, "", {"server", "store", "routing", "providers", "models", "teams"})
    warnings: list[str] = []
    server = _server(doc.get("server") or {})
    store = _store(doc.get("store") or {})
    if store.url.startswith("memory://") and server.workers > 1:
        raise ConfigError("server.workers", f"{server.workers} workers need a shared store: the in-process "
                          "store (memory://) holds one worker's quotas only; set store.url to redis://...")
    providers = _providers(doc.get("providers") or {}, warnings)
    models = _models(doc.get("models") or {}, providers, warnings)
    teams = _teams(doc.get("teams") or {}, models)
    routing = _routing(doc.get("routing") or {})
    for name, provider in providers.items():
        scaling = provider.dedicated.autoscale if provider.dedicated else None
        if scaling and scaling.enabled and not scaling.dry_run and server.workers > 1:
            raise ConfigError(f"providers.{name}.autoscale.enabled", f"each of {server.workers} workers would "
                              "scale on its own share of the traffic; use dry_run, or one worker")
    for name, model in models.items():
        if model.strategy is not None and model.strategy not in STRATEGIES:
            raise ConfigError(f"models.{name}.strategy", choice_problem(model.strategy, STRATEGIES))
    return Config(server=server, store=store, routing=routing, providers=MappingProxyType(providers),
                  models=MappingProxyType(models), teams=MappingProxyType(teams), warnings=tuple(warnings))


def _substitute(node: Any, env: Any) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string, after YAML parsing."""
    if isinstance(node, str):
        return _ENV.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), node)
    if isinstance(node, list):
        return [_substitute(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(value, env) for key, value in node.items()}
    return node


def _server(raw: Any) -> ServerConfig:
    expect_mapping(raw, "server")
    no_unknown(raw, "server", {"host", "port", "workers", "admin_key", "max_body_bytes", "log_level"})
    d = ServerConfig()
    return ServerConfig(
        host=read_str(raw.get("host", d.host), "server.host"),
        port=read_int(raw.get("port", d.port), "server.port", 1, 65535),
        workers=read_int(raw.get("workers", d.workers), "server.workers", 1, 256),
        admin_key=read_str(raw.get("admin_key", d.admin_key), "server.admin_key"),
        max_body_bytes=read_int(raw.get("max_body_bytes", d.max_body_bytes), "server.max_body_bytes", 1024),
        log_level=read_choice(raw.get("log_level", d.log_level), "server.log_level",
                          ("critical", "error", "warning", "info", "debug")),
    )


def _store(raw: Any) -> StoreConfig:
    expect_mapping(raw, "store")
    no_unknown(raw, "store", {"url", "on_failure", "timeout_s", "reservation_ttl_s", "records_max"})
    d = StoreConfig()
    url = read_str(raw.get("url") or d.url, "store.url")
    if not url.startswith(("memory://", "redis://", "rediss://", "unix://")):
        raise ConfigError("store.url", f"unknown scheme in {url!r}; use memory:// or redis://host:6379/0")
    return StoreConfig(
        url=url,
        on_failure=read_choice(raw.get("on_failure", d.on_failure), "store.on_failure", ("deny", "allow")),
        timeout_s=read_float(raw.get("timeout_s", d.timeout_s), "store.timeout_s", 0.01, 30),
        reservation_ttl_s=read_float(raw.get("reservation_ttl_s", d.reservation_ttl_s),
                                 "store.reservation_ttl_s", 1),
        records_max=read_int(raw.get("records_max", d.records_max), "store.records_max", 1),
    )


def _routing(raw: Any) -> RoutingConfig:
    expect_mapping(raw, "routing")
    no_unknown(raw, "routing", {"strategy", "max_attempts", "weights", "usd_per_second", "circuit",
                                 "latency", "models_poll_s", "metrics_poll_s", "metrics_timeout_s", "max_ttft_s",
                                 "rate_limit_cooldown_s"})
    d = RoutingConfig()
    weights = raw.get("weights") or {}
    expect_mapping(weights, "routing.weights")
    no_unknown(weights, "routing.weights", {"cost", "latency"})
    circuit = raw.get("circuit") or {}
    expect_mapping(circuit, "routing.circuit")
    no_unknown(circuit, "routing.circuit", {"failures", "error_ratio", "min_requests", "window_s", "cooldown_s"})
    c = CircuitConfig()
    latency = raw.get("latency") or {}
    expect_mapping(latency, "routing.latency")
    no_unknown(latency, "routing.latency", {"alpha", "forget_after_s"})
    lat = LatencyConfig()
    return RoutingConfig(
        strategy=read_choice(raw.get("strategy", d.strategy), "routing.strategy", STRATEGIES),
        max_attempts=read_int(raw.get("max_attempts", d.max_attempts), "routing.max_attempts", 1, 20),
        cost_weight=read_float(weights.get("cost", d.cost_weight), "routing.weights.cost", 0),
        latency_weight=read_float(weights.get("latency", d.latency_weight), "routing.weights.latency", 0),
        usd_per_second=read_float(raw.get("usd_per_second", d.usd_per_second), "routing.usd_per_second", 0),
        circuit=CircuitConfig(
            failures=read_int(circuit.get("failures", c.failures), "routing.circuit.failures", 1),
            error_ratio=read_float(circuit.get("error_ratio", c.error_ratio), "routing.circuit.error_ratio", 0, 1),
            min_requests=read_int(circuit.get("min_requests", c.min_requests), "routing.circuit.min_requests", 1),
            window_s=read_float(circuit.get("window_s", c.window_s), "routing.circuit.window_s", 0.1),
            cooldown_s=read_float(circuit.get("cooldown_s", c.cooldown_s), "routing.circuit.cooldown_s", 0.01),
        ),
        latency=LatencyConfig(
            alpha=read_float(latency.get("alpha", lat.alpha), "routing.latency.alpha", 0.01, 1),
            forget_after_s=read_float(latency.get("forget_after_s", lat.forget_after_s),
                                      "routing.latency.forget_after_s", 1),
        ),
        models_poll_s=read_float(raw.get("models_poll_s", d.models_poll_s), "routing.models_poll_s", 0),
        metrics_poll_s=read_float(raw.get("metrics_poll_s", d.metrics_poll_s), "routing.metrics_poll_s", 0.1),
        metrics_timeout_s=read_float(raw.get("metrics_timeout_s", d.metrics_timeout_s), "routing.metrics_timeout_s",
                                     0.1),
        max_ttft_s=read_float(raw.get("max_ttft_s", d.max_ttft_s), "routing.max_ttft_s", 0),
        rate_limit_cooldown_s=read_float(raw.get("rate_limit_cooldown_s", d.rate_limit_cooldown_s),
                                     "routing.rate_limit_cooldown_s", 0),
    )


_PROVIDER_KEYS = {"kind", "api_key", "base_url", "endpoints", "unsupported_params", "timeouts", "headers",
                  "max_waiting", "max_inflight", "hourly_cost_usd", "limits", "abandoned_streams"}
# A dedicated provider's endpoints and capacity follow its services, as the control plane reports them.
_DEDICATED_KEYS = (_PROVIDER_KEYS - {"base_url", "endpoints", "max_waiting", "max_inflight", "hourly_cost_usd"}) | {
    "services", "invoke_url_template", "control_url", "control_token", "create", "max_inflight_per_instance",
    "status_poll_s", "control_timeout_s", "instance_hourly_usd", "autoscale"}


def _providers(raw: Any, warnings: list[str]) -> dict[str, ProviderConfig]:
    expect_mapping(raw, "providers")
    out = {}
    for name, spec in raw.items():
        place = f"providers.{name}"
        expect_mapping(spec, place)
        kind = read_choice(spec.get("kind", name), f"{place}.kind", tuple(PROFILES))
        no_unknown(spec, place, _DEDICATED_KEYS if kind == netmind_dedicated.KIND else _PROVIDER_KEYS)
        profile = PROFILES[kind]
        if "limits" in spec:
            profile = _with_limits(profile, spec["limits"], f"{place}.limits")
        dedicated = None
        if kind == netmind_dedicated.KIND:
            dedicated = dedicated_settings(spec, place)
            urls = tuple(dedicated.invoke_url(service) for service in dedicated.services)
        elif "endpoints" in spec:
            urls = tuple(read_url(u, f"{place}.endpoints[{i}]") for i, u in enumerate(expect_list(spec["endpoints"],
                                                                                          f"{place}.endpoints")))
            if not urls:
                raise ConfigError(f"{place}.endpoints", "empty; list at least one base URL")
        else:
            urls = (read_url(spec.get("base_url") or profile.base_url, f"{place}.base_url"),)
        api_key = read_str(spec.get("api_key", ""), f"{place}.api_key")
        enabled = bool(api_key) or not profile.needs_api_key
        if not enabled:
            warnings.append(f"{place}.api_key is empty: provider '{name}' is disabled until it is set")
        elif dedicated is not None and not dedicated.services:
            enabled = False
            warnings.append(f"{place}.services is empty: provider '{name}' is disabled until it names a service "
                            f"(`gateway endpoints create --provider {name}` makes one and prints its id)")
        t = Timeouts()
        timeouts = spec.get("timeouts") or {}
        expect_mapping(timeouts, f"{place}.timeouts")
        no_unknown(timeouts, f"{place}.timeouts", {"connect_s", "first_byte_s", "idle_s", "total_s"})
        hourly = spec.get("hourly_cost_usd")
        headers = spec.get("headers") or {}
        expect_mapping(headers, f"{place}.headers")
        out[name] = ProviderConfig(
            name=name, kind=kind, profile=profile, base_urls=urls, api_key=api_key, enabled=enabled,
            unsupported_params=read_choice(spec.get("unsupported_params", "drop"), f"{place}.unsupported_params",
                                       ("drop", "reject")),
            timeouts=Timeouts(**{k: read_float(timeouts.get(k, getattr(t, k)), f"{place}.timeouts.{k}", 0.001)
                                 for k in ("connect_s", "first_byte_s", "idle_s", "total_s")}),
            headers=tuple((str(k), read_str(v, f"{place}.headers.{k}")) for k, v in headers.items()),
            max_waiting=read_int(spec.get("max_waiting", 4), f"{place}.max_waiting", 0),
            max_inflight=read_int(spec.get("max_inflight", 64), f"{place}.max_inflight", 1),
            hourly_cost_nano=None if hourly is None else usd_to_nano(read_float(hourly, f"{place}.hourly_cost_usd", 0)),
            dedicated=dedicated,
            abandoned_streams=read_choice(spec.get("abandoned_streams", profile.abandoned_streams),
                                          f"{place}.abandoned_streams", ("close", "finish")),
        )
    return out


def _with_limits(profile: Any, raw: Any, place: str) -> Any:
    """Per-provider overrides: `temperature: [0, 1.5]`, `stop: 8`, `logit_bias: true`, `top_k: false`."""
    expect_mapping(raw, place)
    params: dict[str, Bounds | None] = dict(profile.params)
    max_stop = None
    for param, value in raw.items():
        where = f"{place}.{param}"
        if param == "stop":
            max_stop = read_int(value, where, 1)
        elif value is True:
            params[param] = None
        elif value is False:
            params.pop(param, None)
        elif isinstance(value, list) and len(value) == 2:
            low, high = (None if v is None else read_float(v, where) for v in value)
            params[param] = Bounds(low, high)
        else:
            raise ConfigError(where, "give [low, high] (null for open), true to accept any value, or false to drop")
    return profile.with_overrides(params=params, max_stop=max_stop)


def _models(raw: Any, providers: dict[str, ProviderConfig], warnings: list[str]) -> dict[str, ModelConfig]:
    expect_mapping(raw, "models")
    known = ", ".join(sorted(providers)) or "none configured"
    out = {}
    for name, spec in raw.items():
        place = f"models.{name}"
        expect_mapping(spec, place)
        no_unknown(spec, place, {"routes", "strategy"})
        routes = []
        for i, route in enumerate(expect_list(spec.get("routes"), f"{place}.routes")):
            where = f"{place}.routes[{i}]"
            expect_mapping(route, where)
            no_unknown(route, where, {"provider", "model", "price"})
            provider = read_str(route.get("provider"), f"{where}.provider")
            if provider not in providers:
                raise ConfigError(f"{where}.provider", f"no provider named {provider!r} (known: {known})")
            upstream_model = read_str(route.get("model") or name, f"{where}.model")
            if providers[provider].profile.lowercase_model_ids and upstream_model != upstream_model.lower():
                raise ConfigError(f"{where}.model", f"{providers[provider].kind} model ids are lower-case; "
                                  f"write {upstream_model.lower()!r}")
            price = _price(route.get("price"), f"{where}.price")
            if not providers[provider].enabled:
                continue
            routes.append(RouteConfig(provider=provider, model=upstream_model, price=price))
        if not spec.get("routes"):
            raise ConfigError(f"{place}.routes", "a model needs at least one route {provider, model}")
        if not routes:
            warnings.append(f"{place}: every route's provider is disabled; the model is not served")
            continue
        strategy = spec.get("strategy")
        out[name] = ModelConfig(name=name, routes=tuple(routes), strategy=None if strategy is None else str(strategy))
    return out


def _price(raw: Any, place: str) -> Price | None:
    if raw is None:
        return None
    expect_mapping(raw, place)
    no_unknown(raw, place, {"input_per_mtok", "output_per_mtok"})
    return Price(
        input_per_mtok_nano=usd_to_nano(read_float(raw.get("input_per_mtok", 0), f"{place}.input_per_mtok", 0)),
        output_per_mtok_nano=usd_to_nano(read_float(raw.get("output_per_mtok", 0), f"{place}.output_per_mtok", 0)),
    )


def _teams(raw: Any, models: dict[str, ModelConfig]) -> dict[str, TeamConfig]:
    expect_mapping(raw, "teams")
    out = {}
    for name, spec in raw.items():
        place = f"teams.{name}"
        spec = spec or {}
        expect_mapping(spec, place)
        no_unknown(spec, place, {"budget_usd", "rpm", "tpm", "models", "keys", "max_tokens_default"})
        budget = spec.get("budget_usd") or {}
        expect_mapping(budget, f"{place}.budget_usd")
        no_unknown(budget, f"{place}.budget_usd", {"day", "month"})
        day, month = (budget.get(p) for p in ("day", "month"))
        limits = Limits(
            rpm=read_opt_int(spec.get("rpm"), f"{place}.rpm"),
            tpm=read_opt_int(spec.get("tpm"), f"{place}.tpm"),
            budget_day_nano=None if day is None else usd_to_nano(read_float(day, f"{place}.budget_usd.day", 0)),
            budget_month_nano=None if month is None else usd_to_nano(read_float(month, f"{place}.budget_usd.month", 0)),
        )
        patterns = tuple(read_str(p, f"{place}.models[{i}]") for i, p in enumerate(expect_list(spec.get("models", ["*"]),
                                                                                     f"{place}.models")))
        keys = tuple(hash_key(read_str(k, f"{place}.keys[{i}]"))
                     for i, k in enumerate(expect_list(spec.get("keys", []), f"{place}.keys")) if k)
        out[name] = TeamConfig(name=name, limits=limits, models=patterns, key_hashes=keys,
                               max_tokens_default=read_int(spec.get("max_tokens_default", 4096),
                                                       f"{place}.max_tokens_default", 1))
    return out
