"""The `gateway` command: config checks, keys and usage, as an operator uses them."""

from __future__ import annotations

import subprocess
import sys

import httpx
import yaml

from tests.fakes import FakeProvider
from tests.gateway_process import ROOT, GatewayProcess, free_port
from tests.waiting import wait_until


def gateway_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)


def test_check_config_accepts_the_example_and_names_what_it_serves():
    result = gateway_cli("check-config", "config.example.yaml")
    assert result.returncode == 0, result.stderr
    assert "llama-3.1-8b: mock:llama-3.1-8b" in result.stdout  # with no variable set: the stand-in


def test_check_config_names_the_place_and_the_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "providers": {"deepinfra": {"kind": "deepinfra", "api_key": "x"}, "novita": {"kind": "novita", "api_key": "y"},
                      "pool": {"kind": "vllm", "endpoints": ["http://127.0.0.1:1/v1"]}},
        "models": {"llama-3.1-8b": {"routes": [{"provider": "pool", "model": "a"}, {"provider": "novta", "model": "b"}]}},
    }))
    result = gateway_cli("check-config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == ("config error: models.llama-3.1-8b.routes[1].provider: no provider named 'novta' "
                                     "(known: deepinfra, novita, pool)")


def test_keys_and_usage_from_the_command_line(redis_process):
    with FakeProvider("openai") as fake:
        config = {"store": {"url": redis_process.url}, "server": {"admin_key": "admin-secret"},
                  "providers": {"openai": {"kind": "openai", "base_url": fake.base_url, "api_key": fake.api_key}},
                  "models": {"m": {"routes": [{"provider": "openai", "model": "gpt-4o-mini",
                                               "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
                  "teams": {"alpha": {}}}
        with GatewayProcess(config) as gw:
            created = gateway_cli("keys", "create", "--team", "alpha", "--name", "ci", "--config", str(gw.config_path))
            assert created.returncode == 0, created.stderr
            key = created.stdout.strip().splitlines()[-1]
            answer = httpx.post(gw.base_url + "/chat/completions", headers={"authorization": f"Bearer {key}"},
                                json={"model": "m", "messages": [{"role": "user", "content": "two words"}],
                                      "max_tokens": 4})
            assert answer.status_code == 200
            listed = gateway_cli("keys", "list", "--team", "alpha", "--config", str(gw.config_path))
            key_id = listed.stdout.split()[0]
            assert key_id.startswith("key_") and "active" in listed.stdout and key not in listed.stdout
            usage = gateway_cli("usage", "--team", "alpha", "--period", "day", "--config", str(gw.config_path))
            assert "1 requests, 2 prompt + 4 completion tokens, $0.000010" in usage.stdout, usage.stdout
            assert gateway_cli("keys", "revoke", key_id, "--config", str(gw.config_path)).returncode == 0
            assert "revoked" in gateway_cli("keys", "list", "--config", str(gw.config_path)).stdout
            unknown = gateway_cli("keys", "revoke", "key_nope", "--config", str(gw.config_path))
            assert unknown.returncode == 1 and "no key with id" in unknown.stderr


def test_gateway_mock_serves_the_mock_upstream_alone_on_the_port_it_is_given():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateway", "mock", "--port", str(port), "--answer-tokens", "2"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), timeout_s=10, what="the mock to listen")
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                            json={"model": "any", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.json()["choices"][0]["message"]["content"] == "This is"
    finally:
        process.terminate()
        printed, _ = process.communicate(timeout=10)
    assert printed.splitlines()[0] == f"mock upstream at http://127.0.0.1:{port}/v1 (set it as a provider's base_url)"


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def test_gateway_mock_refuses_a_setting_out_of_range():
    result = gateway_cli("mock", "--error-rate", "2")
    assert result.returncode == 2 and result.stderr.strip() == "mock: error_rate: 2 is out of range [0, 1]"
