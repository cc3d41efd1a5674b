"""The Grafana dashboards against a real Prometheus scraping a real gateway under a little
traffic: every panel's PromQL parses and returns data, and no panel names a metric the
gateway does not export."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.observability.metrics import Metrics
from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess, free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
# What Grafana puts in place of its variables; "All" of a multi-value variable is ".*".
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s",
                     "team": ".*", "model": ".*", "provider": ".*"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_METRIC = re.compile(r"\bgateway_[a-z0-9_]+")
_LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*(\w+)\)$")


def panels(board: dict) -> Iterator[dict]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def expressions() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with Grafana's variables filled in) of every target."""
    found = []
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], fill(target["expr"])))
    return found


def fill(expr: str) -> str:
    def value(match: re.Match) -> str:
        assert match.group(1) in GRAFANA_VARIABLES, f"unknown dashboard variable {match.group(0)} in {expr}"
        return GRAFANA_VARIABLES[match.group(1)]
    return _VARIABLE.sub(value, expr)


def exported_names() -> set[str]:
    """Every sample name the gateway can export (a histogram's _bucket, _sum, _count)."""
    names = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


# ---------------------------------------------------------------------------------
# The dashboards as files
# ---------------------------------------------------------------------------------

def test_there_is_a_spend_and_a_traffic_dashboard_with_unique_uids():
    boards = {path.name: json.loads(path.read_text()) for path in DASHBOARDS}
    assert {"spend.json", "traffic.json"} <= set(boards)
    uids = [board["uid"] for board in boards.values()]
    assert len(uids) == len(set(uids))
    for board in boards.values():
        assert [v["name"] for v in board["templating"]["list"]][0] == "datasource"


def test_every_panel_queries_the_chosen_prometheus_and_names_only_exported_metrics():
    exported = exported_names()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                unknown = set(_METRIC.findall(target["expr"])) - exported
                assert not unknown, f"{path.name} / {panel['title']}: {unknown} not exported by the gateway"
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                metric, _ = _LABEL_VALUES.match(variable["query"]["query"]).groups()
                assert metric in exported


def test_panels_do_not_overlap():
    for path in DASHBOARDS:
        taken: set[tuple[int, int]] = set()
        for panel in panels(json.loads(path.read_text())):
            g = panel["gridPos"]
            cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert g["x"] + g["w"] <= 24 and not cells & taken, f"{path.name} / {panel['title']}"
            taken |= cells


# ---------------------------------------------------------------------------------
# Every expression through a real Prometheus
# ---------------------------------------------------------------------------------

class Prometheus:
    """Debian's prometheus binary on a free loopback port, scraping `target` every second."""

    def __init__(self, binary: str, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "gateway", "static_configs": [{"targets": [target]}]}]}
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = open(directory / "prometheus.log", "wb")
        self._process = subprocess.Popen(
            [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.log_path = directory / "prometheus.log"

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/-/ready", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready within {timeout_s} s:\n{self.log_path.read_text()}")

    def query(self, expr: str) -> dict:
        return httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5).json()

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        message = "prometheus is not installed (Debian: apt-get install prometheus; scripts/test.sh does)"
        if os.environ.get("GATEWAY_REQUIRE_REAL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture
def providers() -> Iterator[dict[str, FakeProvider]]:
    started = {"pool": FakeProvider("vllm", completion_tokens=6, token_delay_s=0.002, max_running=4).start(),
               "deepinfra": FakeProvider("deepinfra", completion_tokens=6, token_delay_s=0.002).start(),
               "novita": FakeProvider("novita", completion_tokens=6, token_delay_s=0.002).start()}
    yield started
    for fake in started.values():
        fake.stop()


KEYS = {"alpha": "sk-alpha", "beta": "sk-beta"}
PRICE = {"input_per_mtok": 0.5, "output_per_mtok": 1.5}


def gateway_config(fakes: dict[str, FakeProvider], redis_url: str) -> dict:
    return {
        "store": {"url": redis_url},
        "routing": {"metrics_poll_s": 0.5},
        "providers": {
            "pool": {"kind": "vllm", "endpoints": [fakes["pool"].base_url]},
            "deepinfra": {"kind": "deepinfra", "base_url": fakes["deepinfra"].base_url,
                          "api_key": fakes["deepinfra"].api_key},
            "novita": {"kind": "novita", "base_url": fakes["novita"].base_url, "api_key": fakes["novita"].api_key},
        },
        "models": {
            "chat": {"routes": [{"provider": "pool", "model": "tiny"},
                                {"provider": "deepinfra", "model": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                                 "price": PRICE}]},
            "chat-lite": {"routes": [{"provider": "novita", "model": "meta-llama/llama-3.1-8b-instruct",
                                      "price": PRICE}]},
        },
        "teams": {"alpha": {"keys": [KEYS["alpha"]], "budget_usd": {"day": 1, "month": 20}},
                  "beta": {"keys": [KEYS["beta"]], "budget_usd": {"month": 5}}},
    }


async def little_traffic(base_url: str, pool: FakeProvider) -> int:
    """Both teams, both models, whole and streamed, a fallback from a failing pool, one refusal.

    Returns how many requests were settled (the refusal is not).
    """
    async with httpx.AsyncClient(timeout=10) as client:
        async def send(key: str, model: str, stream: bool) -> None:
            body = {"model": model, "messages": [{"role": "user", "content": "a few words here"}],
                    "max_tokens": 6, "stream": stream}
            async with client.stream("POST", base_url + "/chat/completions", json=body,
                                     headers={"authorization": f"Bearer {key}"}) as response:
                await response.aread()

        jobs = [(key, model, stream) for key in KEYS.values() for model in ("chat", "chat-lite")
                for stream in (False, True) for _ in range(3)]
        await asyncio.gather(*(send(*job) for job in jobs))
        pool.fail_next(2, status=503)  # the pool fails; deepinfra answers instead
        for stream in (False, True):
            await send(KEYS["alpha"], "chat", stream)
        await send("sk-nobody", "chat", False)  # refused: 401
    return len(jobs) + 2


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_panel_expression_parses_and_returns_data_in_prometheus(prometheus_binary, providers, redis_process,
                                                                      tmp_path):
    started = time.monotonic()
    with GatewayProcess(gateway_config(providers, redis_process.url), workers=2) as gw:
        prometheus = Prometheus(prometheus_binary, tmp_path, f"127.0.0.1:{gw.port}")
        try:
            prometheus.wait_ready()
            settled = asyncio.run(little_traffic(gw.base_url, providers["pool"]))

            # Wait until Prometheus has scraped every settled request, then two scrapes more
            # so that every rate() has points on both sides of the traffic.
            def seen() -> float:
                result = prometheus.query("sum(gateway_requests_total)")["data"]["result"]
                return float(result[0]["value"][1]) if result else 0.0

            def scrapes() -> float:
                return float(prometheus.query("sum(count_over_time(up[10m]))")["data"]["result"][0]["value"][1])

            wait_until(lambda: seen() >= settled, 20, f"Prometheus seeing all {settled} requests")
            after = scrapes()
            wait_until(lambda: scrapes() >= after + 2, 20, "two more scrapes")

            failures = []
            for board, title, expr in expressions():
                answer = prometheus.query(expr)
                if answer.get("status") != "success":
                    failures.append(f"{board} / {title}: {answer.get('error')}\n    {expr}")
                elif not answer["data"]["result"]:
                    failures.append(f"{board} / {title}: no data\n    {expr}")
            for path in DASHBOARDS:
                for variable in json.loads(path.read_text())["templating"]["list"]:
                    if variable["type"] == "query":
                        metric, label = _LABEL_VALUES.match(variable["query"]["query"]).groups()
                        values = httpx.get(f"{prometheus.url}/api/v1/label/{label}/values",
                                           params={"match[]": metric}, timeout=5).json()["data"]
                        if not values:
                            failures.append(f"{path.name}: variable {variable['name']} has no values")
            assert not failures, "\n".join(failures)
        finally:
            prometheus.stop()
    assert time.monotonic() - started < 60
