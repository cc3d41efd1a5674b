"""The servers of one benchmark run: upstreams, a private Redis, the gateway, the bare proxy, LiteLLM's.

Each `start_*` function writes what its server needs into the run's directory and
returns a started `Service` on a free loopback port.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import payloads
from bench.processes import Service, ServiceError, descendants, free_port

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VERSION = os.environ.get("BENCH_LITELLM_VERSION", "1.106.2")
LITELLM_VENV = Path(os.environ.get("BENCH_LITELLM_VENV",
                                   Path.home() / ".cache" / "llm-gateway-bench" / f"litellm-{LITELLM_VERSION}"))
LITELLM_KEY = "sk-bench-litellm-master"
UPSTREAM_KEY = "sk-bench-upstream"


class MissingTool(RuntimeError):
    """A program the benchmark needs is not installed; bench/setup.sh installs it."""


def require(program: str) -> str:
    found = shutil.which(program) or (f"/usr/sbin/{program}" if os.access(f"/usr/sbin/{program}", os.X_OK)
                                      else None)
    if found is None:
        raise MissingTool(f"{program} is not installed; run: bash bench/setup.sh")
    return found


def start_python_upstream(directory: Path, name: str, *, chunks: int, gap_ms: float) -> Service:
    """The fake upstream of bench.upstream: JSON answers and SSE streams of a fixed shape."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--chunks", str(chunks),
            "--gap-ms", str(gap_ms)]
    return Service(name, argv, port, directory, env=_env(), cwd=ROOT).start()


def start_nginx_upstream(directory: Path) -> Service:
    """nginx with one worker answering every chat completion with the same JSON: the cheapest upstream."""
    nginx = require("nginx")
    port = free_port()
    home = directory / "nginx"
    home.mkdir(exist_ok=True)
    answer = payloads.completion().decode()
    models = payloads.models().decode()
    assert "'" not in answer + models and "$" not in answer + models  # nginx would read them as syntax
    temp = "".join(f"    {kind}_temp_path {home}/{kind};\n" for kind in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (home / "nginx.conf").write_text(f"""\
worker_processes 1;
daemon off;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temp}    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        default_type application/json;
        location ~ /completions$ {{ return 200 '{answer}'; }}
        location ~ /models$ {{ return 200 '{models}'; }}
        location / {{ return 404 '{{"error":{{"message":"not found"}}}}'; }}
    }}
}}
""")
    return Service("upstream-nginx", [nginx, "-p", str(home), "-c", str(home / "nginx.conf")], port,
                   directory).start()


def start_redis(directory: Path) -> Service:
    """A private redis-server that keeps nothing on disk (never the shared one on 6379)."""
    binary = require("redis-server")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--maxclients", "10000"]
    return Service("redis", argv, port, directory).start()


@dataclass(frozen=True, slots=True)
class Backends:
    """What a gateway under measurement talks to: a JSON upstream, a stream upstream, Redis."""

    json: Service
    stream: Service
    redis: Service


def start_backends(directory: Path, upstream: str, started: list[Service]) -> Backends:
    """Start the three back ends, appending each to `started` as it comes up (so all can be stopped)."""
    json_up = (start_nginx_upstream(directory) if upstream == "nginx"
               else start_python_upstream(directory, "upstream-json", chunks=1, gap_ms=0))
    started.append(json_up)
    stream_up = start_python_upstream(directory, "upstream-stream", chunks=20, gap_ms=10)
    started.append(stream_up)
    redis = start_redis(directory)
    started.append(redis)
    return Backends(json_up, stream_up, redis)


@dataclass(frozen=True, slots=True)
class Team:
    name: str
    key: str


def bench_teams(count: int) -> list[Team]:
    return [Team(f"team-{i}", f"sk-bench-team-{i}") for i in range(count)]


def gateway_config(port: int, workers: int, redis_port: int, json_port: int, stream_port: int,
                   teams: list[Team]) -> dict:
    """Everything on: keys, quotas (rpm, tpm, day and month budgets), accounting, metrics."""
    price = {"input_per_mtok": 0.1, "output_per_mtok": 0.2}
    return {
        "server": {"host": "127.0.0.1", "port": port, "workers": workers, "admin_key": "bench-admin",
                   "log": {"level": "warning"}},
        "store": {"url": f"redis://127.0.0.1:{redis_port}/0"},
        "providers": {
            "upstream": {"kind": "openai", "api_key": UPSTREAM_KEY, "base_url": f"http://127.0.0.1:{json_port}/v1"},
            "streamer": {"kind": "openai", "api_key": UPSTREAM_KEY,
                         "base_url": f"http://127.0.0.1:{stream_port}/v1"},
        },
        "models": {
            payloads.JSON_MODEL: {"routes": [{"provider": "upstream", "model": payloads.UPSTREAM_MODEL,
                                              "price": price}]},
            payloads.STREAM_MODEL: {"routes": [{"provider": "streamer", "model": payloads.UPSTREAM_MODEL,
                                                "price": price}]},
        },
        # Limits far above what a run can reach, so that every request is admitted, yet
        # each is still checked and reserved against all four of them.
        "teams": {t.name: {"keys": [t.key], "rpm": 100_000_000, "tpm": 1_000_000_000_000,
                           "budget_usd": {"day": 1_000_000, "month": 5_000_000}, "models": ["*"]}
                  for t in teams},
    }


class GatewayService(Service):
    """`gateway serve` with N uvicorn workers; ready once /healthz answers and every worker is up.

    `source` is the directory whose `gateway` package runs: this checkout, or another
    one for an A/B comparison.
    """

    def __init__(self, name: str, config: dict, workers: int, directory: Path, source: Path = ROOT) -> None:
        config_path = directory / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        metrics_dir = directory / f"{name}-metrics"
        env = _env(source, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config_path), "--workers", str(workers)]
        super().__init__(name, argv, config["server"]["port"], directory, env=env, cwd=source)
        self.workers = workers
        self.config = config

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> GatewayService:
        super().start(timeout_s)
        deadline = time.monotonic() + timeout_s
        while len(self.worker_pids()) < self.workers or not _answers(self.url + "/healthz"):
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"{self.name} did not become ready:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's workers, or the process itself when alone."""
        if self.workers == 1:
            return [self.pid]
        return [pid for pid in descendants(self.pid) if b"spawn_main" in _cmdline(pid)]


def start_gateway(directory: Path, name: str, workers: int, redis_port: int, json_port: int,
                  stream_port: int, teams: list[Team], source: Path = ROOT) -> GatewayService:
    config = gateway_config(free_port(), workers, redis_port, json_port, stream_port, teams)
    return GatewayService(name, config, workers, directory, source).start()


class BareService(Service):
    """bench.bare, the yardstick proxy, with N uvicorn workers; ready once every worker is up and it answers."""

    def __init__(self, directory: Path, workers: int, upstream_port: int) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "bench.bare", "--port", str(port), "--workers", str(workers),
                "--upstream", f"http://127.0.0.1:{upstream_port}"]
        super().__init__("bare", argv, port, directory, env=_env(), cwd=ROOT)
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BareService:
        super().start(timeout_s)
        deadline = time.monotonic() + timeout_s
        while len(self.worker_pids()) < self.workers or not _answers(self.url + "/v1/chat/completions",
                                                                       payloads.request_body(payloads.JSON_MODEL)):
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"bare did not become ready:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def worker_pids(self) -> list[int]:
        return [pid for pid in descendants(self.pid) if b"spawn_main" in _cmdline(pid)] if self.workers > 1 \
            else [self.pid]


class LiteLLMService(Service):
    """LiteLLM's proxy from its own virtual environment: config only, no database, a master key."""

    def __init__(self, directory: Path, workers: int, json_port: int, stream_port: int) -> None:
        binary = LITELLM_VENV / "bin" / "litellm"
        if not binary.exists():
            raise MissingTool(f"LiteLLM is not installed at {LITELLM_VENV}; run: bash bench/setup.sh --litellm")
        port = free_port()
        config = {
            "model_list": [
                {"model_name": payloads.JSON_MODEL, "litellm_params": {
                    "model": f"openai/{payloads.UPSTREAM_MODEL}", "api_base": f"http://127.0.0.1:{json_port}/v1",
                    "api_key": UPSTREAM_KEY}},
                {"model_name": payloads.STREAM_MODEL, "litellm_params": {
                    "model": f"openai/{payloads.UPSTREAM_MODEL}", "api_base": f"http://127.0.0.1:{stream_port}/v1",
                    "api_key": UPSTREAM_KEY}},
            ],
            "general_settings": {"master_key": LITELLM_KEY},
            "litellm_settings": {"telemetry": False},
        }
        config_path = directory / "litellm.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
        # The bundled price table, not a download at start-up: this machine reaches no other host.
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR")
        argv = [str(binary), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port),
                "--num_workers", str(workers)]
        super().__init__("litellm", argv, port, directory, env=env, cwd=directory)
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> LiteLLMService:
        super().start(timeout_s)
        deadline = time.monotonic() + timeout_s
        while not _answers(self.url + "/health/liveliness"):
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"litellm did not become ready:\n{self.log_tail()}")
            time.sleep(0.2)
        return self


def _env(source: Path = ROOT, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The source directory comes first on the path, ahead of any installed copy of the package.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _answers(url: str, body: bytes | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, data=body, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
