"""A netmind-dedicated provider's config: what it becomes, and every mistake named by its place."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import AutoscaleConfig, ConfigError, ServiceSpec, parse_config


def config(provider: dict[str, Any], **top: Any) -> Any:
    entry = {"kind": "netmind-dedicated", "api_key": "inference-key", **provider}
    return parse_config({"providers": {"nd": entry, "ptok": {"kind": "openai", "api_key": "k"}},
                         "models": {"m": {"routes": [{"provider": "nd", "model": "meta-llama/Meta-Llama-3.1-8B-Instruct"},
                                                     {"provider": "ptok", "model": "gpt-4o-mini"}]}}, **top}, {})


def problem(provider: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config(provider, **top)
    return str(caught.value)


def test_a_full_entry_becomes_a_pool_with_one_endpoint_per_service() -> None:
    provider = config({
        "services": ["svc-a", "svc-b"], "control_token": "control-key",
        "invoke_url_template": "https://inference.example/svc/{service_id}/v1/",
        "create": {"flavor_id": "rtx4090-x1", "image_url": "registry.example/vllm", "gpu_num": 2, "instances": 0},
        "max_inflight_per_instance": 16, "status_poll_s": 5, "instance_hourly_usd": 0.6,
        "autoscale": {"enabled": False, "min_instances": 0, "max_instances": 4, "window_s": 120}}).providers["nd"]
    assert provider.is_pool and provider.enabled
    assert provider.base_urls == ("https://inference.example/svc/svc-a/v1", "https://inference.example/svc/svc-b/v1")
    d = provider.dedicated
    assert (d.control_url, d.control_token, d.max_inflight_per_instance, d.status_poll_s, d.instance_hourly_nano) == (
        "https://api.netmind.ai", "control-key", 16, 5.0, 600_000_000)
    assert d.create == ServiceSpec(flavor_id="rtx4090-x1", image_url="registry.example/vllm", gpu_num=2, instances=0)
    assert d.autoscale == AutoscaleConfig(enabled=False, dry_run=True, min_instances=0, max_instances=4,
                                          window_s=120.0, idle_window_s=900.0, cooldown_s=600.0)


def test_defaults_follow_the_docs_and_the_control_token_defaults_to_the_api_key() -> None:
    provider = config({"services": ["abc"]}).providers["nd"]
    assert provider.base_urls == ("https://api.netmind.ai/inference-api/v1/inference_service/abc",)
    assert provider.dedicated.control_token == "inference-key"
    assert provider.dedicated.autoscale.enabled is False and provider.dedicated.autoscale.dry_run is True


def test_without_services_the_provider_is_disabled_and_says_how_to_get_one() -> None:
    loaded = config({"create": {"flavor_id": "f", "image_url": "i"}})
    assert not loaded.providers["nd"].enabled
    assert [r.provider for r in loaded.models["m"].routes] == ["ptok"]
    assert any("providers.nd.services is empty" in w and "gateway endpoints create --provider nd" in w
               for w in loaded.warnings)


@pytest.mark.parametrize("provider, message", [
    ({"services": ["a"], "endpoints": ["http://x/v1"]}, "providers.nd.endpoints: unknown setting"),
    ({"services": ["a"], "max_inflight": 3}, "providers.nd.max_inflight: unknown setting"),
    ({"services": "abc"}, "providers.nd.services: expected a list, got str"),
    ({"services": ["a", "a"]}, "providers.nd.services[1]: a repeated service id"),
    ({"services": [""]}, "providers.nd.services[0]: empty service id"),
    ({"services": ["a"], "invoke_url_template": "https://x/{id}"},
     "providers.nd.invoke_url_template: the only placeholder allowed is {service_id}"),
    ({"services": ["a", "b"], "invoke_url_template": "https://x/v1"},
     "providers.nd.invoke_url_template: has no {service_id}: every service would share one URL"),
    ({"services": ["a"], "control_url": "api.netmind.ai"}, "providers.nd.control_url: 'api.netmind.ai' is not an http"),
    ({"services": ["a"], "create": {"flavor_id": "f"}}, "providers.nd.create.image_url: missing; give a string"),
    ({"services": ["a"], "create": {"flavor_id": "f", "image_url": "i", "gpus": 2}},
     "providers.nd.create.gpus: unknown setting"),
    ({"services": ["a"], "max_inflight_per_instance": 0}, "providers.nd.max_inflight_per_instance: 0 is out of range"),
    ({"services": ["a"], "autoscale": {"min_instances": 3, "max_instances": 2}},
     "providers.nd.autoscale.max_instances: 2 is below min_instances (3)"),
    ({"services": ["a"], "autoscale": {"enabled": "yes"}},
     "providers.nd.autoscale.enabled: expected true or false, got 'yes'"),
    ({"services": ["a", "b"], "autoscale": {"enabled": True}},
     "providers.nd.autoscale.enabled: the autoscaler sizes exactly one service; this provider's services names 2"),
    ({"services": ["a"], "autoscale": {"window": 60}}, "providers.nd.autoscale.window: unknown setting"),
])
def test_every_mistake_names_its_place(provider: dict[str, Any], message: str) -> None:
    assert problem(provider).startswith(message)


def test_an_acting_autoscaler_needs_one_worker() -> None:
    scaling = {"services": ["a"], "autoscale": {"enabled": True, "dry_run": False, "max_instances": 2}}
    several = {"server": {"workers": 2}, "store": {"url": "redis://127.0.0.1:6379/0"}}
    assert problem(scaling, **several).startswith("providers.nd.autoscale.enabled: each of 2 workers would scale")
    config({**scaling, "autoscale": {**scaling["autoscale"], "dry_run": True}}, **several)  # a dry run only logs


def test_other_kinds_do_not_take_dedicated_settings() -> None:
    with pytest.raises(ConfigError, match="providers.ptok.services: unknown setting"):
        parse_config({"providers": {"ptok": {"kind": "openai", "api_key": "k", "services": ["a"]}}}, {})
