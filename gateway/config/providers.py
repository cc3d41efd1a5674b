"""A provider entry of the config: a profile (`providers/`) plus this deployment's credentials,
URLs, limits and timeouts."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, field_validator

from gateway.config.dedicated import DedicatedConfig
from gateway.config.fields import Flag, Seconds, Section, Text, Url, Usd, Whole, _number, in_range, nano, problem
from gateway.config.mock import MockConfig
from providers import PROFILES, Bounds, Profile, features, mock, netmind_dedicated

_LIMIT_FORMS = "give [low, high] (null for open), true to accept any value, or false to drop"
# A dedicated provider's endpoints and capacity follow its services, as the control plane reports them.
_NOT_DEDICATED = frozenset({"base_url", "endpoints", "max_waiting", "max_inflight", "hourly_cost_usd"})
# The mock is the gateway's own server: no address, no key, nothing paid by the hour.
_NOT_MOCK = frozenset({"api_key", "base_url", "endpoints", "max_waiting", "hourly_cost_usd"})


class Timeouts(Section):
    connect_s: Annotated[Seconds, in_range(0.001)] = 5.0
    first_byte_s: Annotated[Seconds, in_range(0.001)] = 60.0
    idle_s: Annotated[Seconds, in_range(0.001)] = 60.0
    total_s: Annotated[Seconds, in_range(0.001)] = 600.0


def _limit(value: Any) -> Any:
    """One entry of `limits`: a range [low, high], true (any value), false (dropped), or a count (`stop`)."""
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, list) and len(value) == 2:
        return tuple(None if v is None else _number(v, "a number") for v in value)
    raise problem(_LIMIT_FORMS)


def _capabilities(value: dict[str, bool]) -> dict[str, bool]:
    for name in value:
        if not features.expand(name):
            raise problem(f"unknown feature {name!r}; known: {', '.join(features.known_names())} "
                          "(or endpoint.feature, as completions.logprobs)", at=name)
    return value


Capabilities = Annotated[dict[str, Flag], AfterValidator(_capabilities)]


def _endpoint_list(value: Any) -> Any:
    """A pool's base URLs: a list, or one string of comma-separated URLs (a pool in one variable).

    An empty entry is an unset variable, left out: a pool left with none is disabled, not an error.
    """
    if isinstance(value, str):
        value = value.split(",")
    elif isinstance(value, list) and not value:
        raise problem("empty; list at least one base URL")
    if isinstance(value, list):
        urls = (url.strip() if isinstance(url, str) else url for url in value)
        return tuple(url for url in urls if url != "")
    return value


class ProviderConfig(Section):
    """One configured upstream. `profile` is its kind's profile with this entry's `limits` applied."""

    derived: ClassVar[frozenset[str]] = frozenset({"name", "dedicated", "mock"})
    name: str = ""
    kind: str = ""
    api_key: Text = ""
    base_url: Url | None = None
    # A pool: one base URL per member. Empty once its variables are substituted: the pool is disabled.
    endpoints: Annotated[tuple[Url, ...] | None, BeforeValidator(_endpoint_list)] = None
    unsupported_params: Literal["drop", "reject"] = "drop"
    timeouts: Timeouts = Timeouts()
    headers: dict[str, Text] = {}
    max_waiting: Annotated[Whole, in_range(0)] = 4  # a pool member with more queued requests has no room
    max_inflight: Annotated[Whole, in_range(1)] = 64
    hourly_cost_usd: Usd | None = None
    limits: dict[str, Annotated[Any, BeforeValidator(_limit)]] = {}
    # Features this deployment's models honour beyond (true) or short of (false) the kind's profile.
    capabilities: Capabilities = {}
    # A stream the client leaves: "close" stops it; "finish" reads it to its usage (see providers.profile).
    abandoned_streams: Literal["close", "finish"] = "close"
    dedicated: DedicatedConfig | None = None  # kind netmind-dedicated only
    mock: MockConfig | None = None  # kind mock only

    @classmethod
    def prepare(cls, raw: Any, allowed: set[str] | None = None) -> Any:
        if not isinstance(raw, dict):
            return super().prepare(raw)
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in PROFILES:
            raise problem(f"{kind!r} is not one of: {', '.join(PROFILES)}", at="kind")
        allowed = cls.settings()
        if kind == netmind_dedicated.KIND:
            allowed = (allowed - _NOT_DEDICATED) | DedicatedConfig.settings()
        elif kind == mock.KIND:
            allowed = (allowed - _NOT_MOCK) | MockConfig.settings()
        spec = {"abandoned_streams": PROFILES[kind].abandoned_streams, **super().prepare(raw, allowed)}
        if kind == mock.KIND:
            spec["mock"] = {key: spec.pop(key) for key in MockConfig.settings() if key in spec}
        if kind == netmind_dedicated.KIND:
            # Its settings are written flat; they are kept together. The control token defaults to the key.
            own = {key: spec.pop(key) for key in DedicatedConfig.settings() if key in spec}
            own["control_token"] = own.get("control_token") or spec.get("api_key") or ""
            spec["dedicated"] = own
        return spec

    @field_validator("limits")
    @classmethod
    def _limit_forms(cls, limits: dict[str, Any]) -> dict[str, Any]:
        for param, value in limits.items():
            if param == "stop":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise problem(f"expected a whole number, got {value!r}", at="stop")
                if value < 1:
                    raise problem(f"{value} is out of range [1, inf]", at="stop")
            elif not isinstance(value, (bool, tuple)):
                raise problem(_LIMIT_FORMS, at=param)
        return limits

    @cached_property
    def profile(self) -> Profile:
        base = PROFILES[self.kind]
        if not self.limits:
            return base
        params: dict[str, Bounds | None] = dict(base.params)
        for param, value in self.limits.items():
            if value is True:
                params[param] = None
            elif value is False:
                params.pop(param, None)
            elif isinstance(value, tuple):
                params[param] = Bounds(*value)
        return base.with_overrides(params=params, max_stop=self.limits.get("stop"))

    @cached_property
    def features(self) -> frozenset[str]:
        """The features (qualified, as "chat.tools") its routes honour unless a route says otherwise."""
        return features.declared(features.qualified(self.profile.features), self.capabilities)

    @cached_property
    def base_urls(self) -> tuple[str, ...]:
        """One base URL, or one per pool member (a dedicated service each)."""
        if self.dedicated is not None:
            return tuple(self.dedicated.invoke_url(service) for service in self.dedicated.services)
        return self.endpoints or (self.base_url or self.profile.base_url.rstrip("/"),)

    @property
    def disabled_because(self) -> str | None:
        """Why this provider takes no traffic, as a start-up warning; None when it is enabled."""
        place = f"providers.{self.name}"
        if self.profile.needs_api_key and not self.api_key:
            return f"{place}.api_key is empty: provider '{self.name}' is disabled until it is set"
        if self.endpoints == ():
            return (f"{place}.endpoints names no URL (its variables are unset): provider '{self.name}' is "
                    "disabled until one is set")
        if self.dedicated is not None and not self.dedicated.services:
            return (f"{place}.services is empty: provider '{self.name}' is disabled until it names a service "
                    f"(`gateway endpoints create --provider {self.name}` makes one and prints its id)")
        return None

    @cached_property
    def enabled(self) -> bool:
        return self.disabled_because is None

    @cached_property
    def hourly_cost_nano(self) -> int | None:
        return nano(self.hourly_cost_usd)

    @property
    def is_pool(self) -> bool:
        """Paid by the hour, so first while it has room: a vLLM pool or rented dedicated services."""
        return self.profile.has_load_metrics or self.dedicated is not None
