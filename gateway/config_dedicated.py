"""The settings of a `netmind-dedicated` provider: its services, how to create one, autoscaling."""

from __future__ import annotations

from typing import Any

from gateway.config import AutoscaleConfig, ConfigError, DedicatedConfig, ServiceSpec
from gateway.config_values import (
    expect_list,
    expect_mapping,
    no_unknown,
    read_float,
    read_int,
    read_str,
    read_url,
)
from gateway.money import usd_to_nano
from providers import netmind_dedicated


def dedicated_settings(spec: dict, place: str) -> DedicatedConfig:
    """A netmind-dedicated provider's services, control plane, capacity and autoscaler."""
    services = tuple(read_str(s, f"{place}.services[{i}]") for i, s in enumerate(expect_list(spec.get("services", []),
                                                                                   f"{place}.services")))
    for i, service in enumerate(services):
        if not service or service in services[:i]:
            raise ConfigError(f"{place}.services[{i}]", f"{'empty' if not service else 'a repeated'} service id")
    template = read_url(spec.get("invoke_url_template", netmind_dedicated.INVOKE_URL_TEMPLATE),
                    f"{place}.invoke_url_template")
    try:
        shared = template.format(service_id="") == template
    except (KeyError, IndexError, ValueError):
        raise ConfigError(f"{place}.invoke_url_template", "the only placeholder allowed is {service_id}") from None
    if shared and len(services) > 1:
        raise ConfigError(f"{place}.invoke_url_template", "has no {service_id}: every service would share one URL")
    hourly = spec.get("instance_hourly_usd")
    d = DedicatedConfig()
    return DedicatedConfig(
        services=services,
        invoke_url_template=template,
        control_url=read_url(spec.get("control_url", netmind_dedicated.CONTROL_URL), f"{place}.control_url"),
        # NetMind issues one account key; a separate control token is for deployments that split them.
        control_token=read_str(spec.get("control_token") or spec.get("api_key") or "", f"{place}.control_token"),
        create=None if spec.get("create") is None else _service_spec(spec["create"], f"{place}.create"),
        max_inflight_per_instance=read_int(spec.get("max_inflight_per_instance", d.max_inflight_per_instance),
                                       f"{place}.max_inflight_per_instance", 1),
        status_poll_s=read_float(spec.get("status_poll_s", d.status_poll_s), f"{place}.status_poll_s", 0.05),
        control_timeout_s=read_float(spec.get("control_timeout_s", d.control_timeout_s), f"{place}.control_timeout_s",
                                 0.1),
        instance_hourly_nano=None if hourly is None else usd_to_nano(read_float(hourly, f"{place}.instance_hourly_usd",
                                                                            0)),
        autoscale=_autoscale(spec.get("autoscale") or {}, f"{place}.autoscale", services),
    )


def _service_spec(raw: Any, place: str) -> ServiceSpec:
    expect_mapping(raw, place)
    no_unknown(raw, place, {"name", "description", "flavor_id", "image_url", "command", "port", "gpu_num",
                             "instances"})
    d = ServiceSpec(flavor_id="", image_url="")
    return ServiceSpec(
        flavor_id=read_str(raw.get("flavor_id"), f"{place}.flavor_id"),
        image_url=read_str(raw.get("image_url"), f"{place}.image_url"),
        name=read_str(raw.get("name", d.name), f"{place}.name"),
        description=read_str(raw.get("description", d.description), f"{place}.description"),
        command=read_str(raw.get("command", d.command), f"{place}.command"),
        port=read_int(raw.get("port", d.port), f"{place}.port", 1, 65535),
        gpu_num=read_int(raw.get("gpu_num", d.gpu_num), f"{place}.gpu_num", 1),
        instances=read_int(raw.get("instances", d.instances), f"{place}.instances", 0),
    )


def _autoscale(raw: Any, place: str, services: tuple[str, ...]) -> AutoscaleConfig:
    expect_mapping(raw, place)
    no_unknown(raw, place, {"enabled", "dry_run", "min_instances", "max_instances", "window_s", "idle_window_s",
                             "cooldown_s"})
    d = AutoscaleConfig()
    for flag in ("enabled", "dry_run"):
        if not isinstance(raw.get(flag, False), bool):
            raise ConfigError(f"{place}.{flag}", f"expected true or false, got {raw[flag]!r}")
    low = read_int(raw.get("min_instances", d.min_instances), f"{place}.min_instances", 0)
    high = read_int(raw.get("max_instances", max(d.max_instances, low)), f"{place}.max_instances", 1)
    if high < low:
        raise ConfigError(f"{place}.max_instances", f"{high} is below min_instances ({low})")
    enabled = raw.get("enabled", d.enabled)
    if enabled and len(services) != 1:
        raise ConfigError(f"{place}.enabled", f"the autoscaler sizes exactly one service; this provider's "
                          f"services names {len(services)}")
    return AutoscaleConfig(
        enabled=enabled,
        dry_run=raw.get("dry_run", d.dry_run),
        min_instances=low,
        max_instances=high,
        window_s=read_float(raw.get("window_s", d.window_s), f"{place}.window_s", 0.1),
        idle_window_s=read_float(raw.get("idle_window_s", d.idle_window_s), f"{place}.idle_window_s", 0.1),
        cooldown_s=read_float(raw.get("cooldown_s", d.cooldown_s), f"{place}.cooldown_s", 0),
    )
