"""A route's health as its own traffic shows it: a circuit breaker with a rate-limit cool-down, and EWMAs.

Both are fed only by the outcomes of real requests, and both are read without any I/O.
Times are monotonic seconds handed in by the caller, so tests can drive a clock.
"""

from __future__ import annotations

from gateway.config import CircuitConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_BUCKETS = 10  # the error-ratio window is kept as this many counters, not as a log of requests


class Circuit:
    """The breaker of one route at one endpoint.

    Closed: traffic flows. Open: after `failures` failures in a row, or an error ratio of at
    least `error_ratio` over the last `window_s` once `min_requests` were seen; no traffic
    for `cooldown_s`. Half-open: the cool-down is over and one request, the probe, is let
    through; its success closes the circuit, its failure opens it again. Separately, a 429
    cools the circuit down (`cool_until`) without counting as a failure: the route is busy,
    not broken, so the router sends elsewhere first but still here when nothing else is left.

    Plain attributes, read by metrics and /admin/routes: `state`, `consecutive` (failures
    in a row), `reopen_at` (when an open circuit admits its probe), `cool_until` (end of a
    429 cool-down), `probing` (a probe is in flight).
    """

    __slots__ = ("_config", "_width", "state", "consecutive", "reopen_at", "cool_until", "probing",
                 "probe_until", "_epochs", "_totals", "_errors")

    def __init__(self, config: CircuitConfig) -> None:
        self._config = config
        self._width = config.window_s / _BUCKETS
        self.state = CLOSED
        self.consecutive = 0
        self.reopen_at = 0.0
        self.cool_until = 0.0
        self.probing = False
        self.probe_until = 0.0
        self._clear()

    def admits(self, now: float) -> bool:
        """Whether the breaker lets a request through now (a 429 cool-down is asked apart)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return now >= self.reopen_at
        # A probe that never reported back (its task died) must not hold the circuit forever.
        return not self.probing or now >= self.probe_until

    def cooling(self, now: float) -> bool:
        return now < self.cool_until

    def take(self, now: float) -> None:
        """A request is sent here: past an open circuit's cool-down, it becomes the probe."""
        if self.state != CLOSED:
            self.state = HALF_OPEN
            self.probing = True
            self.probe_until = now + self._config.cooldown_s

    def success(self, now: float) -> None:
        self.consecutive = 0
        if self.state != CLOSED:
            # Errors from before the outage must not reopen a circuit that just recovered.
            self.state = CLOSED
            self.probing = False
            self._clear()
        self._count(now, failed=False)

    def failure(self, now: float) -> None:
        self.consecutive += 1
        self._count(now, failed=True)
        if self.state == OPEN:
            return  # a request sent before the circuit opened; the cool-down stands
        c = self._config
        if self.state == HALF_OPEN or self.consecutive >= c.failures:
            self._open(now)
            return
        total, errors = self.window(now)
        if total >= c.min_requests and errors >= c.error_ratio * total:
            self._open(now)

    def release(self) -> None:
        """A request that said nothing about health (the client's own 4xx, a cancelled call)."""
        self.probing = False

    def cool_down(self, now: float, seconds: float) -> None:
        """Send nothing here for `seconds` (a 429's Retry-After)."""
        self.probing = False
        self.cool_until = max(self.cool_until, now + seconds)

    def window(self, now: float) -> tuple[int, int]:
        """(requests, failures) within the last `window_s`."""
        epoch = int(now / self._width)
        total = errors = 0
        for i in range(_BUCKETS):
            if epoch - self._epochs[i] < _BUCKETS:
                total += self._totals[i]
                errors += self._errors[i]
        return total, errors

    def _clear(self) -> None:
        self._epochs = [-_BUCKETS] * _BUCKETS  # an epoch no window reaches
        self._totals = [0] * _BUCKETS
        self._errors = [0] * _BUCKETS

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.probing = False
        self.reopen_at = now + self._config.cooldown_s

    def _count(self, now: float, failed: bool) -> None:
        epoch = int(now / self._width)
        i = epoch % _BUCKETS
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._totals[i] = 0
            self._errors[i] = 0
        self._totals[i] += 1
        if failed:
            self._errors[i] += 1


class Ewma:
    """An exponentially weighted moving average of a duration, in seconds.

    An estimate nobody has refreshed for `stale_s` reads as unknown again: a route that
    was slow once is then tried anew instead of being passed over forever.
    """

    __slots__ = ("value", "samples", "updated_at", "_alpha", "_stale_s")

    def __init__(self, alpha: float = 0.2, stale_s: float = 300.0) -> None:
        self.value = 0.0
        self.samples = 0
        self.updated_at = 0.0
        self._alpha = alpha
        self._stale_s = stale_s

    def add(self, sample: float, now: float) -> None:
        if self.samples == 0 or now - self.updated_at > self._stale_s:
            self.value = sample
        else:
            self.value += self._alpha * (sample - self.value)
        self.samples += 1
        self.updated_at = now

    def get(self, now: float) -> float | None:
        """The estimate, or None when there is none worth trusting."""
        if self.samples == 0 or now - self.updated_at > self._stale_s:
            return None
        return self.value
