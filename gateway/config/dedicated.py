"""The settings of a `netmind-dedicated` provider: its services, how to create one, autoscaling.

They are written flat in the provider's entry; `gateway.config.providers` gathers them here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, field_validator, model_validator

from gateway.config.fields import Flag, Seconds, Section, Text, Url, Usd, Whole, in_range, nano, problem
from providers import netmind_dedicated


class ServiceSpec(Section):
    """A NetMind dedicated service to create: its GPU flavor, its image and its size."""

    flavor_id: str
    image_url: str
    name: Text = "gateway-endpoint"
    description: Text = ""
    command: Text = ""
    port: Annotated[Whole, in_range(1, 65535)] = 8000
    gpu_num: Annotated[Whole, in_range(1)] = 1
    instances: Annotated[Whole, in_range(0)] = 1


class AutoscaleConfig(Section):
    """When the gateway changes a dedicated service's instance count (see gateway.dedicated.autoscaler)."""

    enabled: Flag = False
    dry_run: Flag = True  # decide and log, never call the control plane
    min_instances: Annotated[Whole, in_range(0)] = 1  # 0 lets an idle service be stopped
    max_instances: Annotated[Whole, in_range(1)] = 1
    window_s: Annotated[Seconds, in_range(0.1)] = 300.0  # spill-over cost is judged over this long
    idle_window_s: Annotated[Seconds, in_range(0.1)] = 900.0  # surplus this long before an instance goes
    cooldown_s: Annotated[Seconds, in_range(0)] = 600.0  # at least this long between two scaling actions

    @model_validator(mode="before")
    @classmethod
    def _max_follows_min(cls, raw: object) -> object:
        # An unset maximum is at least the minimum, so `min_instances: 3` alone is consistent.
        if isinstance(raw, dict) and "max_instances" not in raw and "min_instances" in raw:
            low = raw["min_instances"]
            if isinstance(low, int) and not isinstance(low, bool) and low > 1:
                return {**raw, "max_instances": low}
        return raw

    @model_validator(mode="after")
    def _ordered(self) -> AutoscaleConfig:
        if self.max_instances < self.min_instances:
            raise problem(f"{self.max_instances} is below min_instances ({self.min_instances})", at="max_instances")
        return self


def _template(template: str) -> str:
    try:
        template.format(service_id="")
    except (KeyError, IndexError, ValueError):
        raise problem("the only placeholder allowed is {service_id}") from None
    return template


class DedicatedConfig(Section):
    """A provider of kind netmind-dedicated: rented services, their control plane and autoscaler."""

    services: tuple[Text, ...] = ()  # service ids, one endpoint each
    invoke_url_template: Annotated[Url, AfterValidator(_template)] = netmind_dedicated.INVOKE_URL_TEMPLATE
    control_url: Url = netmind_dedicated.CONTROL_URL
    control_token: Text = ""  # NetMind issues one account key; a separate token is for those who split them
    create: ServiceSpec | None = None  # what `gateway endpoints create` asks for
    max_inflight_per_instance: Annotated[Whole, in_range(1)] = 8
    status_poll_s: Annotated[Seconds, in_range(0.05)] = 10.0
    control_timeout_s: Annotated[Seconds, in_range(0.1)] = 10.0
    instance_hourly_usd: Usd | None = None  # None: the flavor's price per GPU-hour x gpu_num
    autoscale: AutoscaleConfig = AutoscaleConfig()

    @field_validator("services")
    @classmethod
    def _distinct(cls, services: tuple[str, ...]) -> tuple[str, ...]:
        for i, service in enumerate(services):
            if not service or service in services[:i]:
                raise problem(f"{'empty' if not service else 'a repeated'} service id", at=f"[{i}]")
        return services

    @model_validator(mode="after")
    def _consistent(self) -> DedicatedConfig:
        if len(self.services) > 1 and self.invoke_url_template.format(service_id="") == self.invoke_url_template:
            raise problem("has no {service_id}: every service would share one URL", at="invoke_url_template")
        if self.autoscale.enabled and len(self.services) != 1:
            raise problem(f"the autoscaler sizes exactly one service; this provider's services names "
                          f"{len(self.services)}", at="autoscale.enabled")
        return self

    @property
    def instance_hourly_nano(self) -> int | None:
        return nano(self.instance_hourly_usd)

    def invoke_url(self, service_id: str) -> str:
        return self.invoke_url_template.format(service_id=service_id).rstrip("/")
