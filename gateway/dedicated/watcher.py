"""Keeps each dedicated service's status fresh and turns it into routing: only an available service takes traffic.

Every `status_poll_s` the watcher reads each service from the control plane and writes on
the service's router Endpoint `healthy` (the status is `available`) and `max_inflight`
(instances x max_inflight_per_instance, its room as a pool member). Until its first
answer a service takes nothing. A poll that fails keeps the last status known: the
control plane being out of reach says nothing about the service itself, and a service
that stops answering is taken out by its circuit breaker.

It also keeps what each service costs: the flavor's price per GPU-hour (from the flavor
list, or `instance_hourly_usd`) x GPUs per instance x instances, accrued over the time
the service is initializing or available (what NetMind bills: "time running"; a stopped
or failed service is taken as costing nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from gateway.config import ProviderConfig
from gateway.dedicated.client import (
    AVAILABLE,
    INITIALIZING,
    STOPPED,
    UNKNOWN,
    ControlPlane,
    ControlPlaneError,
    Flavor,
    Service,
)
from gateway.dedicated.metrics import DedicatedMetrics
from gateway.routing import Endpoint

log = logging.getLogger("gateway.dedicated")

BILLED = (INITIALIZING, AVAILABLE)
FIRST_POLL_TIMEOUT_S = 3.0  # a slow control plane must not hold the gateway's start-up
FLAVORS_EVERY_S = 600.0  # prices change rarely
FLAVORS_RETRY_S = 60.0  # a flavor missing from the list is looked for again at most this often
SECONDS_PER_HOUR = 3600


@dataclass(slots=True)
class ServiceState:
    """One service as the gateway knows it; read by the autoscaler, metrics and /admin/endpoints."""

    service_id: str
    endpoint: Endpoint
    status: str = UNKNOWN
    instances: int = 0
    flavor_id: str | None = None
    gpu_num: int | None = None
    instance_hourly_nano: int | None = None  # None while the flavor's price is not known
    changed_at: float = 0.0  # monotonic time its status or size last changed, or it was last scaled
    polled_at: float | None = None  # its last good poll
    error: str | None = None  # why the last poll failed; None after a good one
    accrued_nano: float = 0.0  # what it has cost since this process started

    def hourly_nano(self) -> int | None:
        """What it costs per hour now; None when it runs at a price not known."""
        if self.status not in BILLED:
            return 0
        if self.instance_hourly_nano is None:
            return None
        return self.instances * self.instance_hourly_nano


class Watcher:
    """Owns the poll task of one dedicated provider; `poll_once` runs one round (tests, start-up)."""

    def __init__(self, provider: ProviderConfig, endpoints: list[Endpoint], client: ControlPlane,
                 metrics: DedicatedMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        assert provider.dedicated is not None
        self.provider = provider
        self._config = provider.dedicated
        self._client = client
        self._metrics = metrics
        self._clock = clock
        now = clock()
        self.states = [ServiceState(service_id, endpoint, changed_at=now)
                       for service_id, endpoint in zip(self._config.services, endpoints)]
        for endpoint in endpoints:
            endpoint.healthy = False  # nothing is sent to a service before the control plane says it is available
            endpoint.max_inflight = 0
        self.flavors: dict[str, Flavor] = {}
        self._flavors_at: float | None = None

    async def first_poll(self) -> None:
        """One poll before serving, bounded so that a slow control plane cannot hold start-up."""
        try:
            await asyncio.wait_for(self.poll_once(), FIRST_POLL_TIMEOUT_S)
        except TimeoutError:
            log.warning("dedicated provider %s: the control plane did not answer within %g s; its services take "
                        "no traffic until it does", self.provider.name, FIRST_POLL_TIMEOUT_S)

    async def poll_once(self) -> None:
        await self._refresh_flavors()
        await asyncio.gather(*(self.poll(state) for state in self.states))

    async def poll(self, state: ServiceState) -> None:
        """Read one service and apply what it says."""
        try:
            service = await self._client.get(state.service_id)
        except ControlPlaneError as error:
            self._failed(state, error)
            return
        self.apply(state, service)

    def apply(self, state: ServiceState, service: Service) -> None:
        now = self._clock()
        if state.polled_at is not None:
            hourly = state.hourly_nano() or 0
            state.accrued_nano += hourly * (now - state.polled_at) / SECONDS_PER_HOUR
        state.polled_at = now
        if state.error is not None:
            log.warning("dedicated service %s/%s: the control plane answers again", self.provider.name,
                        state.service_id)
            state.error = None
        instances = 0 if service.status == STOPPED else (
            service.instances if service.instances is not None else state.instances or 1)
        if service.status != state.status:
            # At WARNING, so that it shows without any logging config: it changes where traffic goes.
            log.warning("dedicated service %s/%s is %s (was %s)%s", self.provider.name, state.service_id,
                        service.status, state.status, "" if service.status in (AVAILABLE, INITIALIZING, STOPPED)
                        else ": it takes no traffic" if service.status == "unavailable"
                        else ": a status the gateway does not know; it takes no traffic")
        if service.status != state.status or instances != state.instances:
            state.changed_at = now
        state.status, state.instances = service.status, instances
        state.flavor_id = service.flavor_id or state.flavor_id or (self._config.create.flavor_id
                                                                   if self._config.create else None)
        state.gpu_num = service.gpu_num or state.gpu_num
        state.instance_hourly_nano = self._instance_hourly(state)
        endpoint = state.endpoint
        endpoint.healthy = service.status == AVAILABLE
        endpoint.max_inflight = instances * self._config.max_inflight_per_instance if endpoint.healthy else 0
        if self._metrics is not None:
            labels = (self.provider.name, state.service_id)
            self._metrics.service_status(*labels, service.status)
            self._metrics.instances.labels(*labels).set(instances)
            self._metrics.capacity.labels(*labels).set(endpoint.max_inflight)

    def hourly_nano(self) -> int | None:
        """What all the services cost per hour now; None when one runs at a price not known."""
        total = 0
        for state in self.states:
            hourly = state.hourly_nano()
            if hourly is None:
                return None
            total += hourly
        return total

    def accrued_nano(self) -> float:
        return sum(state.accrued_nano for state in self.states)

    def _instance_hourly(self, state: ServiceState) -> int | None:
        if self._config.instance_hourly_nano is not None:
            return self._config.instance_hourly_nano
        flavor = self.flavors.get(state.flavor_id or "")
        if flavor is None or flavor.gpu_hour_nano is None:
            return None
        gpus = state.gpu_num or (self._config.create.gpu_num if self._config.create else 1)
        return flavor.gpu_hour_nano * gpus

    async def _refresh_flavors(self) -> None:
        if self._config.instance_hourly_nano is not None:
            return  # priced by config; the flavor list is not needed
        now = self._clock()
        missing = any(s.flavor_id and s.flavor_id not in self.flavors for s in self.states)
        due = FLAVORS_RETRY_S if missing or not self.flavors else FLAVORS_EVERY_S
        if self._flavors_at is not None and now - self._flavors_at < due:
            return
        self._flavors_at = now
        try:
            self.flavors = {flavor.flavor_id: flavor for flavor in await self._client.flavors()}
        except ControlPlaneError as error:
            self._count_error(error)
            log.warning("dedicated provider %s: cannot read the flavor list, so its hourly cost is unknown: %s",
                        self.provider.name, error)

    def _failed(self, state: ServiceState, error: ControlPlaneError) -> None:
        self._count_error(error)
        if error.reason == "not_found" and state.status != UNKNOWN:
            # Deleted (or never created under this id): nothing left to send traffic to.
            state.status, state.instances, state.changed_at = UNKNOWN, 0, self._clock()
            state.endpoint.healthy, state.endpoint.max_inflight = False, 0
        if str(error) != state.error:
            log.warning("dedicated service %s/%s: status poll failed, keeping status %s: %s", self.provider.name,
                        state.service_id, state.status, error)
        state.error = str(error)

    def _count_error(self, error: ControlPlaneError) -> None:
        if self._metrics is not None:
            self._metrics.control_errors.labels(self.provider.name, error.reason).inc()
