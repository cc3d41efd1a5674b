"""The autoscaler of a dedicated service: the policy as a pure function (`decide`), and the loop that applies it.

The policy, with h = what one instance costs per hour (flavor price per GPU-hour x GPUs):
  - hold while the service is initializing, unavailable or of unknown status, and for
    cooldown_s after the last action (a dry run's and a failed one's included);
  - up to min_instances when below it, down to max_instances when above it;
  - up by one, below max_instances, when the requests of its models that spilled over to
    per-token routes during the last window_s cost more, at that rate, than an instance:
        spill_cost(window_s) x 3600 / window_s  >  h
  - down by one, above min_instances, after an idle window: during the last idle_window_s
    (and window_s) nothing spilled over and one instance fewer would have carried the peak in flight,
        peak_inflight <= (instances - 1) x max_inflight_per_instance,
    and, for the last instance (down to 0: stopped), no request came at all.
A window counts only once the service has held its status and size for all of it, so a
decision never reads traffic from before the previous change: up then down (or down
then up) takes at least a full window in between, besides the cool-down.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable

from gateway.config import AutoscaleConfig, ProviderConfig
from gateway.dedicated.client import AVAILABLE, INITIALIZING, STOPPED, ControlPlane, ControlPlaneError
from gateway.dedicated.cost import Ledger
from gateway.dedicated.metrics import DedicatedMetrics
from gateway.dedicated.watcher import ServiceState, Watcher
from gateway.money import nano_to_usd

log = logging.getLogger("gateway.dedicated")

UP, DOWN, HOLD = "up", "down", "hold"
HISTORY = 50  # actions kept for /admin/endpoints
MAX_TICK_S = 1.0  # how often in-flight is sampled and the policy evaluated, at most


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the policy reads besides its config: the service now and its traffic over the windows."""

    status: str
    instances: int
    instance_hourly_nano: int | None  # None while the flavor's price is unknown
    max_inflight_per_instance: int
    steady_s: float  # how long the service has kept its status and size
    spill_cost_nano: int  # requests of its models served per token, over the last window_s
    spill_requests: int
    idle_spill_requests: int  # the same, over the last idle_window_s
    served_requests: int  # requests the service took, over the last idle_window_s
    peak_inflight: int  # the most it had in flight at once, over the last idle_window_s


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # up | down | hold
    target: int  # instances wanted (the current count when holding)
    reason: str  # a short code, also a metric label
    detail: str  # the numbers behind it, in a sentence


def decide(seen: Observation, policy: AutoscaleConfig, now: float, last_action_at: float | None) -> Decision:
    """What to do with the service now; pure, so every rule is tested without a clock or a network."""
    n = seen.instances

    def hold(reason: str, detail: str) -> Decision:
        return Decision(HOLD, n, reason, detail)

    if seen.status == INITIALIZING:
        return hold("initializing", "the service is initializing; waiting for it to settle")
    if seen.status not in (AVAILABLE, STOPPED):
        return hold("unavailable" if seen.status == "unavailable" else "status_unknown",
                    f"the service is {seen.status}: deploy or scaling failed, or its status is not known; "
                    "not scaling until it is available or stopped")
    if last_action_at is not None and now - last_action_at < policy.cooldown_s:
        return hold("cooldown", f"{now - last_action_at:.0f} s since the last action, cooldown_s is "
                                f"{policy.cooldown_s:g}")
    if n < policy.min_instances:
        return Decision(UP, policy.min_instances, "below_min", f"{n} instances, min_instances is {policy.min_instances}")
    if n > policy.max_instances:
        return Decision(DOWN, policy.max_instances, "above_max", f"{n} instances, max_instances is "
                                                                 f"{policy.max_instances}")
    waiting = []
    if n < policy.max_instances:
        if seen.steady_s < policy.window_s:
            waiting.append(f"{policy.window_s:g} s window to judge spill-over")
        elif seen.instance_hourly_nano is None:
            return hold("price_unknown", "the flavor's price is unknown, so spill-over cannot be weighed "
                                         "against an instance-hour (set instance_hourly_usd)")
        else:
            hourly_spill = seen.spill_cost_nano * 3600 / policy.window_s
            if hourly_spill > seen.instance_hourly_nano:
                return Decision(UP, n + 1, "spillover_cost",
                                f"{seen.spill_requests} requests spilled over to per-token routes in the last "
                                f"{policy.window_s:g} s for ${nano_to_usd(seen.spill_cost_nano):.6f}, "
                                f"${nano_to_usd(round(hourly_spill)):.4f}/h, more than an instance at "
                                f"${nano_to_usd(seen.instance_hourly_nano):.4f}/h")
    if n > policy.min_instances:
        if seen.steady_s < policy.idle_window_s:
            waiting.append(f"{policy.idle_window_s:g} s idle window")
        elif seen.idle_spill_requests == 0 and seen.spill_requests == 0:
            rest = (n - 1) * seen.max_inflight_per_instance
            if n == 1 and seen.served_requests == 0:
                return Decision(DOWN, 0, "idle", f"no request in the last {policy.idle_window_s:g} s: stopping "
                                                 "the last instance")
            if n > 1 and seen.peak_inflight <= rest:
                return Decision(DOWN, n - 1, "idle", f"at most {seen.peak_inflight} in flight in the last "
                                                     f"{policy.idle_window_s:g} s and nothing spilled over: "
                                                     f"{n - 1} of {n} instances carry {rest}")
    if waiting:
        return hold("warming_up", f"steady for {seen.steady_s:.0f} s; waiting for a full " + " and ".join(waiting))
    return hold("no_change", f"spill-over ${nano_to_usd(seen.spill_cost_nano):.6f} in the last {policy.window_s:g} s "
                             f"(an instance-hour is ${nano_to_usd(seen.instance_hourly_nano or 0):.4f}); "
                             f"{seen.served_requests} served, peak {seen.peak_inflight} in flight "
                             f"in the last {policy.idle_window_s:g} s")


@dataclass(frozen=True, slots=True)
class Action:
    """A decision to scale, as carried out: `mode` is applied, dry_run or failed."""

    at: float  # wall-clock time (epoch seconds)
    action: str
    instances: int
    target: int
    reason: str
    detail: str
    mode: str
    error: str | None = None


class Autoscaler:
    """Evaluates the policy for one service every tick and, unless in dry run, resizes it through the control plane."""

    def __init__(self, provider: ProviderConfig, watcher: Watcher, ledger: Ledger, client: ControlPlane,
                 metrics: DedicatedMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        assert provider.dedicated is not None and len(watcher.states) == 1
        self.provider = provider
        self.policy = provider.dedicated.autoscale
        self._per_instance = provider.dedicated.max_inflight_per_instance
        self.state: ServiceState = watcher.states[0]
        self._watcher = watcher
        self._ledger = ledger
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self.last: Decision | None = None  # the latest evaluation, holds included
        self.last_action_at: float | None = None
        self.history: deque[Action] = deque(maxlen=HISTORY)

    def observe(self, now: float) -> Observation:
        state, window, policy = self.state, self._ledger.window, self.policy
        spill_cost, spill, _, _ = window.over(now, policy.window_s)
        _, idle_spill, served, peak = window.over(now, policy.idle_window_s)
        return Observation(status=state.status, instances=state.instances,
                           instance_hourly_nano=state.instance_hourly_nano,
                           max_inflight_per_instance=self._per_instance, steady_s=now - state.changed_at,
                           spill_cost_nano=spill_cost, spill_requests=spill, idle_spill_requests=idle_spill,
                           served_requests=served, peak_inflight=peak)

    async def tick(self) -> Decision:
        """Sample in-flight, decide, and act on the decision."""
        now = self._clock()
        self._ledger.window.inflight(now, self.state.endpoint.inflight)
        decision = decide(self.observe(now), self.policy, now, self.last_action_at)
        previous, self.last = self.last, decision
        if decision.action == HOLD:
            if previous is None or previous.reason != decision.reason:
                log.info("autoscaler %s: hold (%s: %s)", self._name, decision.reason, decision.detail)
            return decision
        await self._act(decision, now)
        return decision

    async def _act(self, decision: Decision, now: float) -> None:
        self.last_action_at = now
        instances, error = self.state.instances, None
        if self.policy.dry_run:
            mode = "dry_run"
        else:
            try:
                await self._client.scale(self.state.service_id, decision.target)
                mode = "applied"
                self.state.changed_at = self._clock()  # the windows start again from the new size
            except ControlPlaneError as failure:
                mode, error = "failed", str(failure)
        self._record(Action(time.time(), decision.action, instances, decision.target, decision.reason,
                            decision.detail, mode, error))
        if mode == "applied":
            await self._watcher.poll(self.state)  # route by the new status and size without waiting for a poll

    def _record(self, action: Action) -> None:
        self.history.append(action)
        # At WARNING, so that it shows without any logging config: every action changes what the gateway spends.
        log.warning("autoscaler %s: %s%s %d -> %d instances (%s: %s)%s", self._name,
                    {"dry_run": "[dry run] would scale ", "applied": "scaling "}.get(action.mode, "FAILED to scale "),
                    action.action, action.instances, action.target, action.reason, action.detail,
                    f": {action.error}" if action.error else "")
        if self._metrics is not None:
            self._metrics.decisions.labels(self.provider.name, action.action, action.reason, action.mode).inc()
            self._metrics.target.labels(self.provider.name, self.state.service_id).set(action.target)

    def describe(self) -> dict[str, Any]:
        return {**self.policy.model_dump(), "last_evaluation": None if self.last is None else asdict(self.last),
                "actions": [asdict(a) for a in self.history]}

    @property
    def _name(self) -> str:
        return f"{self.provider.name}/{self.state.service_id}"
