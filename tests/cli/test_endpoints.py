"""`gateway endpoints`: flavors, create, status, scale and delete against the fake control plane, as an operator types them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import cli
from tests.dedicated.fake_control_plane import FakeControlPlane


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = cli.main(["endpoints", *args])
    out, err = capsys.readouterr()
    return code, out, err


def direct(control_plane: FakeControlPlane) -> list[str]:
    return ["--control-url", control_plane.url, "--token", control_plane.token]


@pytest.fixture
def config_file(tmp_path: Path, control_plane: FakeControlPlane) -> Any:
    def write(**provider: Any) -> str:
        path = tmp_path / "gateway.yaml"
        entry = {"kind": "netmind-dedicated", "api_key": control_plane.token, "control_url": control_plane.url,
                 "invoke_url_template": "https://invoke.example/{service_id}/v1", **provider}
        path.write_text(yaml.safe_dump({"providers": {"nd": entry}}))
        return str(path)
    return write


def test_flavors_lists_price_and_availability(capsys: pytest.CaptureFixture, control_plane: FakeControlPlane) -> None:
    code, out, _ = run(capsys, "flavors", *direct(control_plane))
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["flavor_id", "display_name", "free", "GPUs/node", "USD/GPU-hour"]
    assert row.split() == ["rtx4090-x1", "NVIDIA_GeForce_RTX_4090", "4", "8", "0.3000"]


def test_create_from_the_config_spec_waits_until_available_and_says_what_to_add(
        capsys: pytest.CaptureFixture, control_plane: FakeControlPlane, config_file: Any) -> None:
    path = config_file(create={"flavor_id": "rtx4090-x1", "image_url": "registry.example/vllm", "instances": 1})
    code, out, _ = run(capsys, "create", "--config", path, "--name", "llama", "--wait", "5")
    assert code == 0
    service_id = re.search(r"created service (\w+): initializing", out).group(1)
    assert f"invoke URL: https://invoke.example/{service_id}/v1" in out
    assert f"to route to it, add '{service_id}' to providers.nd.services in {path}" in out
    assert re.search(r"initializing -> available after \d\.\d s", out)
    assert control_plane.services[service_id].name == "llama"  # a flag overrides the spec


def test_a_create_whose_deploy_fails_exits_non_zero(capsys: pytest.CaptureFixture,
                                                    control_plane: FakeControlPlane) -> None:
    code, out, err = run(capsys, "create", "--flavor", "no-such-flavor", "--image", "img", "--wait", "5",
                         *direct(control_plane))
    assert code == 1
    assert "initializing -> unavailable" in out and "is unavailable: its deploy failed" in err


def test_create_needs_a_flavor_and_an_image(capsys: pytest.CaptureFixture, control_plane: FakeControlPlane) -> None:
    code, _, err = run(capsys, "create", "--flavor", "rtx4090-x1", *direct(control_plane))
    assert code == 2 and "say what to create: --image" in err
    assert control_plane.calls == []


def test_status_shows_the_configured_services_with_their_hourly_cost(
        capsys: pytest.CaptureFixture, control_plane: FakeControlPlane, config_file: Any) -> None:
    running, stopped = control_plane.add_service(instances=2), control_plane.add_service(instances=0)
    code, out, _ = run(capsys, "status", "--config", config_file(services=[running, stopped]))
    assert code == 0
    first, second = out.splitlines()
    assert first.split() == [running, "available", "2", "x", "rtx4090-x1", "(1", "GPU)", "$0.6000/h",
                             f"https://invoke.example/{running}/v1"]
    assert second.split()[:2] == [stopped, "stopped"] and "$0.0000/h" in second


def test_status_of_an_unknown_service_fails_and_says_so(capsys: pytest.CaptureFixture,
                                                        control_plane: FakeControlPlane) -> None:
    code, _, err = run(capsys, "status", "nope", *direct(control_plane))
    assert code == 1 and "nope  error: GET" in err and "404, no such service" in err


def test_scale_and_delete(capsys: pytest.CaptureFixture, control_plane: FakeControlPlane, config_file: Any) -> None:
    service_id = control_plane.add_service(instances=1)
    path = config_file(services=[service_id])
    code, out, _ = run(capsys, "scale", service_id, "3", "--config", path)
    assert code == 0 and out.strip() == f"service {service_id}: target 3 instances; now available"
    assert control_plane.services[service_id].target == 3

    code, _, err = run(capsys, "delete", service_id, "--config", path)
    assert code == 2 and "run again with --yes" in err and service_id in control_plane.services
    code, out, _ = run(capsys, "delete", service_id, "--yes", "--config", path)
    assert code == 0 and service_id not in control_plane.services
    assert f"remove it from providers.nd.services in {path}" in out


def test_a_refused_token_and_a_missing_one_are_told_apart(capsys: pytest.CaptureFixture,
                                                          control_plane: FakeControlPlane,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, "flavors", "--control-url", control_plane.url, "--token", "wrong")
    assert code == 1 and "401, the control token was refused" in err
    monkeypatch.delenv("NETMIND_CONTROL_TOKEN", raising=False)
    code, _, err = run(capsys, "flavors", "--control-url", control_plane.url)
    assert code == 2 and "no control-plane token: pass --token" in err


def test_a_config_with_several_dedicated_providers_needs_provider(capsys: pytest.CaptureFixture,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    entry = {"kind": "netmind-dedicated", "api_key": "k"}
    path.write_text(yaml.safe_dump({"providers": {"a": entry, "b": entry}}))
    code, _, err = run(capsys, "flavors", "--config", str(path))
    assert code == 2 and "several providers of kind netmind-dedicated: name one with --provider" in err
    code, _, err = run(capsys, "flavors", "--config", str(path), "--provider", "c")
    assert code == 2 and "has no provider 'c' of kind netmind-dedicated (it has: a, b)" in err
