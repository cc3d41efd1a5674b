"""A provider profile: what one kind of upstream accepts and how it answers, as data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

from providers.features import NONE


@dataclass(frozen=True, slots=True)
class Bounds:
    """An accepted numeric range; `low_open` makes the lower end exclusive, as top_p's (0, 1]."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open else '['}{low}, {high}]"


ANY = None  # a parameter accepted with any value the OpenAI schema allows

# Parameters every OpenAI-compatible server takes and the gateway always forwards.
CORE_PARAMS = frozenset({"model", "messages", "prompt", "input", "stream", "stream_options"})

OPENAI_SAMPLING: Mapping[str, Bounds | None] = {
    "temperature": Bounds(0, 2),
    "top_p": Bounds(0, 1),
    "max_tokens": Bounds(1),
    "n": Bounds(1, 128),
    "stop": ANY,
    "presence_penalty": Bounds(-2, 2),
    "frequency_penalty": Bounds(-2, 2),
    "logit_bias": ANY,
    "seed": ANY,
    "user": ANY,
}


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything the gateway must know to speak to one kind of upstream.

    Limits here are defaults; a deployment overrides them per provider in config.
    """

    kind: str
    base_url: str
    params: Mapping[str, Bounds | None]
    endpoints: frozenset[str] = frozenset({"chat", "completions", "embeddings"})
    # Rerank served at `/inference/{model}` beside the OpenAI base, as queries and documents in,
    # bare scores out (DeepInfra); the gateway speaks the Cohere/Jina shape to the client.
    rerank_by_inference: bool = False
    # Per endpoint, the features (providers.features) it honours; a deployment adds or removes some.
    features: Mapping[str, frozenset[str]] = field(default_factory=lambda: NONE)
    # Parameters the gateway does not know are sent on: the upstream is its API's authority.
    forwards_unknown: bool = False
    renames: Mapping[str, str] = field(default_factory=dict)
    max_stop: int = 4
    streams_with_n: bool = True
    # Content deltas the upstream leaks that a client must never see (DeepInfra's "</s>").
    dropped_deltas: tuple[str, ...] = ()
    cost_field: str | None = None  # usage field with the provider's own cost in USD
    # A stream the client leaves: "close" stops the generation at once; "finish" reads it to
    # its usage, for providers that bill an abandoned request anyway, so it is billed exactly.
    abandoned_streams: str = "close"
    lowercase_model_ids: bool = False
    lists_models: bool = True
    publishes_windows: bool = False  # its /models gives each model's context window
    # What one unit of a price its /models publishes is worth in USD per million tokens.
    published_price_unit_usd: float = 1.0
    has_load_metrics: bool = False
    needs_api_key: bool = True

    def with_overrides(self, *, base_url: str | None = None,
                       params: Mapping[str, Bounds | None] | None = None,
                       max_stop: int | None = None) -> "Profile":
        """A copy with this deployment's limits; `params` replaces the whole table."""
        return replace(
            self,
            base_url=base_url or self.base_url,
            params=MappingProxyType(dict(self.params if params is None else params)),
            max_stop=self.max_stop if max_stop is None else max_stop,
        )
