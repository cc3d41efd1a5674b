"""What a dedicated provider's traffic is worth: the tokens it served, and the per-token spend around it.

A settlement observer per dedicated provider watches the public models that have a route
through it. It keeps:
  - over a sliding window, what the autoscaler reads: the cost and count of requests that
    spilled over to per-token routes, the requests the provider served, and the peak of
    its in-flight requests (sampled by the autoscaler);
  - since the process started, what the reports read: tokens and requests served, and
    what those same tokens would have cost on the model's cheapest per-token route.
The services' own cost (hourly price x time running) is the watcher's; the effective
cost per million tokens is that cost over these tokens (`effective_per_mtok_nano`).
"""

from __future__ import annotations

import math
import time
from typing import Callable

from gateway.accounting.settlement import Outcome
from gateway.config import Config, Price
from gateway.money import TOKENS_PER_MTOK, token_cost
from gateway.store import UsageRecord

BUCKETS = 60  # a window is kept as this many sums, not as a log of requests


class Window:
    """Sums and a peak over the last seconds, in fixed-width time buckets (a ring)."""

    __slots__ = ("_width", "_epochs", "_spill_cost", "_spill", "_served", "_peak")

    def __init__(self, span_s: float) -> None:
        self._width = span_s / BUCKETS
        self._epochs = [-math.inf] * BUCKETS  # an epoch no window reaches
        self._spill_cost = [0] * BUCKETS
        self._spill = [0] * BUCKETS
        self._served = [0] * BUCKETS
        self._peak = [0] * BUCKETS

    def spilled(self, now: float, cost_nano: int) -> None:
        i = self._bucket(now)
        self._spill_cost[i] += cost_nano
        self._spill[i] += 1

    def served(self, now: float) -> None:
        self._served[self._bucket(now)] += 1

    def inflight(self, now: float, inflight: int) -> None:
        i = self._bucket(now)
        self._peak[i] = max(self._peak[i], inflight)

    def over(self, now: float, seconds: float) -> tuple[int, int, int, int]:
        """(spill-over cost in nano-dollars, spilled requests, served requests, peak in flight) over `seconds`."""
        newest = int(now // self._width)
        oldest = newest - min(max(math.ceil(seconds / self._width), 1), BUCKETS) + 1
        cost = spill = served = peak = 0
        for i in range(BUCKETS):
            if oldest <= self._epochs[i] <= newest:
                cost += self._spill_cost[i]
                spill += self._spill[i]
                served += self._served[i]
                peak = max(peak, self._peak[i])
        return cost, spill, served, peak

    def _bucket(self, now: float) -> int:
        epoch = int(now // self._width)
        i = epoch % BUCKETS
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._spill_cost[i] = self._spill[i] = self._served[i] = self._peak[i] = 0
        return i


class Ledger:
    """The traffic of the models one dedicated provider serves; `observe` is its settlement observer."""

    def __init__(self, provider: str, config: Config, span_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.provider = provider
        self._clock = clock
        # Per model, the per-token prices of its routes: the equivalent cost is the cheapest of them.
        self.prices: dict[str, list[Price]] = {
            name: [r.price for r in model.routes if r.price is not None and not config.providers[r.provider].is_pool]
            for name, model in config.models.items() if any(r.provider == provider for r in model.routes)}
        self._pools = frozenset(name for name, p in config.providers.items() if p.is_pool)
        self.window = Window(span_s)
        self.requests = 0
        self.tokens = 0
        self.equivalent_nano = 0  # the served tokens at each model's cheapest per-token price

    def observe(self, outcome: Outcome, record: UsageRecord) -> None:
        prices = self.prices.get(record.model)
        if prices is None or not record.provider:
            return
        now = self._clock()
        if record.provider == self.provider:
            self.requests += 1
            self.tokens += record.prompt_tokens + record.completion_tokens
            self.equivalent_nano += min((token_cost(record.prompt_tokens, p.input_per_mtok_nano)
                                         + token_cost(record.completion_tokens, p.output_per_mtok_nano)
                                         for p in prices), default=0)
            self.window.served(now)
        elif record.provider not in self._pools and record.cost_nano:
            self.window.spilled(now, record.cost_nano)

    @property
    def models(self) -> list[str]:
        return sorted(self.prices)


def effective_per_mtok_nano(cost_nano: float, tokens: int) -> int | None:
    """What a million tokens cost at `cost_nano` for `tokens`; None before the first token."""
    if tokens <= 0:
        return None
    return round(cost_nano * TOKENS_PER_MTOK / tokens)
