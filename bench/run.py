"""One benchmark run: start every server, measure each path in turn, and keep every figure.

Phases, in order: warm-up; saturation and fixed-rate latency (repeated, medians
reported); a sweep of offered rates for the plot; streaming TTFB; a thousand streams
held by one worker; a soak for memory growth; then LiteLLM's proxy when comparing.
Direct-to-upstream figures are taken beside every gateway figure, so a reader can see
the upstream and the load generator were never the limit; the bare proxy's (bench.bare:
the same job with no features, the same workers) beside them, so that gateway / bare is
the cost of the features, a ratio that holds on a noisy machine where absolute figures move.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench import payloads, redis_cost, stack
from bench.fixed_rate import FixedRate, run_hey
from bench.processes import Service, raise_open_files_limit
from bench.saturation import Saturation, run_wrk, write_script
from bench.streams import StreamRun, hold_streams, streams_at_rate
from bench.usage import Meter, ProcessUsage, rss_bytes

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything a run may vary; the defaults are the published run."""

    workers: int = 2
    compare: bool = False  # also measure LiteLLM's proxy
    repeat: int = 3
    upstream: str = "nginx"  # "nginx" or "python" for non-streaming answers
    teams: int = 4
    connections: int = 64  # wrk's, for saturation
    saturation_s: float = 10.0
    warmup_s: float = 3.0
    rate: float = 500.0  # the fixed rate of the added-latency figures
    low_rate: float = 10.0  # a rate every path sustains, LiteLLM's included (paced, measured once)
    rate_s: float = 10.0
    burst: int = 10  # connections of the bursty shape
    sweep_rates: tuple[float, ...] = (50, 100, 250, 500, 1000, 1500, 2000, 2500, 3000)
    sweep_s: float = 5.0
    sweep_per_connection: float = 250.0  # the sweep adds a connection per this many requests/s
    stream_rate: float = 50.0
    stream_s: float = 10.0
    stream_chunks: int = 20
    stream_gap_ms: float = 10.0
    hold_streams: int = 1000
    hold_ramp_s: float = 5.0
    hold_chunks: int = 60
    hold_gap_ms: float = 250.0
    soak_requests: int = 200_000
    soak_checkpoint: int = 20_000
    soak_max_s: float = 600.0  # a slow (or busy) machine stops the soak here and says so
    litellm_connections: int = 0  # 0: the same as ours


SMOKE = Settings(
    repeat=1, upstream="python", teams=2, connections=16, saturation_s=2, warmup_s=1, rate=200, low_rate=200,
    rate_s=1, burst=5, sweep_rates=(100, 400), sweep_s=1, stream_rate=20, stream_s=1, stream_chunks=5,
    hold_streams=100, hold_ramp_s=0.5, hold_chunks=20, hold_gap_ms=100, soak_requests=3_000,
    soak_checkpoint=1_000)


@dataclass
class PathUnderTest:
    """One way to reach the upstream, and the processes that serve it."""

    name: str
    json_url: str
    stream_url: str
    keys: list[str]  # cycled by wrk
    workers: int = 0
    wrk_script: Path | None = None
    body_path: Path | None = None
    processes: Callable[[], list[tuple[str, int]]] = list


@dataclass
class Results:
    settings: dict
    machine: dict
    saturation: dict[str, list[Saturation]] = field(default_factory=dict)
    fixed: dict[str, list[FixedRate]] = field(default_factory=dict)  # "path|shape|rate" -> repeats
    sweep: dict[str, list[FixedRate]] = field(default_factory=dict)  # path -> one per rate
    streams: dict[str, StreamRun] = field(default_factory=dict)
    hold: StreamRun | None = None
    soak: dict = field(default_factory=dict)
    processes: dict[str, list[list[ProcessUsage]]] = field(default_factory=dict)  # phase -> repeats
    accounting: dict = field(default_factory=dict)
    redis: dict[str, list[redis_cost.RedisCost]] = field(default_factory=dict)  # phase -> repeats
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Run:
    """Owns the servers of one run; `execute()` measures and always stops them."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        self.s = settings
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.services: list[Service] = []
        self.results = Results(settings=dataclasses.asdict(settings), machine=machine())
        self.teams = stack.bench_teams(settings.teams)

    def execute(self) -> Results:
        started = time.monotonic()
        raise_open_files_limit()
        try:
            self._measure()
        finally:
            for service in reversed(self.services):
                service.stop()
        self.results.seconds = time.monotonic() - started
        self.results.machine["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        self.results.machine["cpu_pressure_at_end"] = cpu_pressure()
        return self.results

    # --- servers ----------------------------------------------------------------------

    def _keep(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def _start_servers(self) -> None:
        s = self.s
        log("starting upstreams, redis and the gateway")
        if s.upstream == "nginx":
            self.json_upstream = self._keep(stack.start_nginx_upstream(self.dir))
        else:
            self.json_upstream = self._keep(stack.start_python_upstream(self.dir, "upstream-json", chunks=1,
                                                                        gap_ms=0))
        self.stream_upstream = self._keep(stack.start_python_upstream(
            self.dir, "upstream-stream", chunks=s.stream_chunks, gap_ms=s.stream_gap_ms))
        self.redis = self._keep(stack.start_redis(self.dir))
        self.gateway = self._keep(stack.start_gateway(self.dir, "gateway", s.workers, self.redis.port,
                                                      self.json_upstream.port, self.stream_upstream.port,
                                                      self.teams))
        self.bare = self._keep(stack.BareService(self.dir, s.workers, self.json_upstream.port).start())

    def _upstream_processes(self) -> list[tuple[str, int]]:
        out = [(f"upstream ({self.s.upstream})", pid) for pid in self.json_upstream.pids()]
        out.append(("upstream (python, streams)", self.stream_upstream.pid))
        out.append(("redis", self.redis.pid))
        return out

    def _gateway_processes(self, gateway: stack.GatewayService) -> list[tuple[str, int]]:
        workers = gateway.worker_pids()
        out = [] if gateway.workers == 1 else [("gateway supervisor", gateway.pid)]
        return out + [(f"gateway worker {i + 1}", pid) for i, pid in enumerate(workers)]

    def _paths(self) -> list[PathUnderTest]:
        path = "/v1/chat/completions"
        direct = PathUnderTest("direct", f"http://127.0.0.1:{self.json_upstream.port}{path}",
                               f"http://127.0.0.1:{self.stream_upstream.port}{path}", [""],
                               processes=self._upstream_processes)
        through = PathUnderTest("gateway", self.gateway.url + path, self.gateway.url + path,
                                [t.key for t in self.teams], workers=self.s.workers,
                                processes=lambda: self._upstream_processes() + self._gateway_processes(self.gateway))
        # The same requests as the gateway's (keys included, which it ignores), to the same upstream.
        bare = PathUnderTest("bare", self.bare.url + path, "", [t.key for t in self.teams], workers=self.s.workers,
                             processes=lambda: self._upstream_processes() + [
                                 (f"bare worker {i + 1}", pid) for i, pid in enumerate(self.bare.worker_pids())])
        return [self._prepare(direct), self._prepare(bare), self._prepare(through)]

    def _prepare(self, p: PathUnderTest) -> PathUnderTest:
        body = payloads.request_body(payloads.JSON_MODEL)
        p.wrk_script = write_script(self.dir, p.name, body, p.keys)
        p.body_path = self.dir / "body.json"
        p.body_path.write_bytes(body)
        return p

    # --- phases -----------------------------------------------------------------------

    def _measure(self) -> None:
        s = self.s
        self._start_servers()
        paths = self._paths()
        for p in paths:
            self._warm(p)
        for rep in range(s.repeat):
            log(f"repeat {rep + 1}/{s.repeat}: saturation and fixed rates")
            for p in paths:
                self._saturate(p)
            for shape in (1, s.burst):
                for p in paths:
                    self._fixed(p, s.rate, shape, s.rate_s)
        if s.low_rate != s.rate:
            for p in paths:
                self._fixed(p, s.low_rate, 1, s.rate_s)
        self._check_accounting()
        for p in paths:
            self._sweep(p)
        for p in paths:
            if p.stream_url:  # the bare proxy reads whole answers: it does not relay streams
                self._streams(p)
        self._hold()
        self._soak(next(p for p in paths if p.name == "gateway"))
        if s.compare:
            self._litellm()

    def _warm(self, p: PathUnderTest) -> None:
        log(f"warming {p.name}")
        assert p.wrk_script is not None
        run_wrk(p.json_url, p.wrk_script, connections=min(self.s.connections, 16), seconds=self.s.warmup_s)
        if not p.stream_url:
            return
        streams_at_rate(p.stream_url, payloads.request_body(payloads.STREAM_MODEL, stream=True), p.keys[0],
                        rate=10, seconds=0.5)

    def _metered(self, phase: str, processes: list[tuple[str, int]], action: Callable[[], object]) -> object:
        meter = Meter()
        for label, pid in processes:
            meter.watch(label, pid)
        meter.start()
        try:
            return action()
        finally:
            self.results.processes.setdefault(phase, []).append(meter.stop())

    def _saturate(self, p: PathUnderTest) -> None:
        connections = (self.s.litellm_connections or self.s.connections) if p.name == "litellm" else self.s.connections
        assert p.wrk_script is not None
        before = redis_cost.snapshot(self.redis.port)
        result = self._metered(f"saturation {p.name}", p.processes(), lambda: run_wrk(
            p.json_url, p.wrk_script, connections=connections, seconds=self.s.saturation_s))
        assert isinstance(result, Saturation)
        if p.name == "gateway":
            cost = redis_cost.cost(before, redis_cost.snapshot(self.redis.port), result.requests)
            self.results.redis.setdefault(f"saturation {p.name}", []).append(cost)
            log(f"  redis: {cost.cpu_us_per_request:.1f} us CPU, {cost.calls_per_request:.2f} calls per request")
        self.results.saturation.setdefault(p.name, []).append(result)
        log(f"  {p.name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
            f"errors {result.errors}")

    def _fixed(self, p: PathUnderTest, rate: float, connections: int, seconds: float) -> FixedRate:
        assert p.body_path is not None
        result = run_hey(p.json_url, p.body_path, p.keys[0], rate=rate, connections=connections, seconds=seconds)
        self.results.fixed.setdefault(f"{p.name}|{result.shape}|{rate:g}", []).append(result)
        log(f"  {p.name} {rate:g}/s {result.shape}: p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
            f"achieved {result.achieved_rps:,.0f}/s, errors {result.errors}")
        return result

    def _sweep(self, p: PathUnderTest) -> None:
        ceiling = 0.8 * statistics.median(r.rps for r in self.results.saturation[p.name])
        rates = [r for r in self.s.sweep_rates if r <= ceiling] or [min(self.s.sweep_rates)]
        if p.name == "litellm":
            rates = sorted({r for r in (2, 5, 10, 20, 40, 80, 160) if r <= ceiling} | {self.s.low_rate})
        log(f"sweep {p.name}: {', '.join(f'{r:g}' for r in rates)} req/s")
        assert p.body_path is not None
        for rate in rates:
            connections = max(1, math.ceil(rate / self.s.sweep_per_connection))
            result = run_hey(p.json_url, p.body_path, p.keys[0], rate=rate, connections=connections,
                             seconds=self.s.sweep_s)
            self.results.sweep.setdefault(p.name, []).append(result)

    def _streams(self, p: PathUnderTest) -> None:
        s = self.s
        body = payloads.request_body(payloads.STREAM_MODEL, stream=True)
        result = self._metered(f"streams {p.name}", p.processes(), lambda: streams_at_rate(
            p.stream_url, body, p.keys[0], rate=s.stream_rate, seconds=s.stream_s,
            expect_events=s.stream_chunks + 2))
        assert isinstance(result, StreamRun)
        self.results.streams[p.name] = result
        log(f"streams {p.name}: TTFB p50 {result.ttfb_p50_ms:.2f} ms, p99 {result.ttfb_p99_ms:.2f} ms, "
            f"{result.ok}/{result.streams} ok")

    def _hold(self) -> None:
        """A gateway of one worker holds N slow streams at once: errors, and memory per stream."""
        s = self.s
        log(f"holding {s.hold_streams} streams on one worker")
        upstream = self._keep(stack.start_python_upstream(self.dir, "upstream-slow-stream", chunks=s.hold_chunks,
                                                          gap_ms=s.hold_gap_ms))
        gateway = self._keep(stack.start_gateway(self.dir, "gateway-one-worker", 1, self.redis.port,
                                                 self.json_upstream.port, upstream.port, self.teams))
        url = gateway.url + "/v1/chat/completions"
        body = payloads.request_body(payloads.STREAM_MODEL, stream=True)
        streams_at_rate(url, body, self.teams[0].key, rate=20, seconds=0.5, expect_events=0)  # warm
        time.sleep(0.3)
        worker = gateway.worker_pids()[0]
        before = rss_bytes(worker) or 0

        def measure() -> dict:
            return {"rss_before": before, "rss_all_open": rss_bytes(worker) or 0,
                    "open_files": len(os.listdir(f"/proc/{worker}/fd"))}

        run = hold_streams(url, body, self.teams[0].key, count=s.hold_streams, ramp_s=s.hold_ramp_s,
                           expect_events=s.hold_chunks + 2, when_all_open=measure)
        run.extra["rss_after"] = rss_bytes(worker) or 0
        run.extra["per_stream_bytes"] = (run.extra["rss_all_open"] - before) / max(s.hold_streams, 1)
        self.results.hold = run
        log(f"  {run.ok}/{run.streams} ok, {run.extra['open_when_measured']} open when measured, "
            f"{run.extra['per_stream_bytes'] / 1024:.1f} KiB per stream")
        gateway.stop()
        upstream.stop()

    def _soak(self, p: PathUnderTest) -> None:
        """Saturate until `soak_requests` answers; worker memory at the checkpoint and at the end."""
        s = self.s
        workers = self.gateway.worker_pids()
        rate = statistics.median(r.rps for r in self.results.saturation[p.name])
        log(f"soak: {s.soak_requests:,} requests through the gateway (~{s.soak_requests / rate:.0f} s)")
        assert p.wrk_script is not None
        done = 0
        checkpoint: list[int] | None = None
        checkpoint_at = 0
        segments = []
        deadline = time.monotonic() + s.soak_max_s
        while done < s.soak_requests and (checkpoint is None or time.monotonic() < deadline):
            target = s.soak_checkpoint if checkpoint is None else s.soak_requests
            seconds = max(1, min(10, round((target - done) / rate)))
            r = run_wrk(p.json_url, p.wrk_script, connections=s.connections, seconds=seconds)
            if r.errors:
                self.results.notes.append(f"soak segment had {r.errors} errors")
            done += r.requests - r.non_2xx
            rss = [rss_bytes(pid) or 0 for pid in workers]
            segments.append({"requests": done, "rss": rss, "rps": r.rps})
            if checkpoint is None and done >= s.soak_checkpoint:
                checkpoint, checkpoint_at = rss, done
        if done < s.soak_requests:
            self.results.notes.append(f"the soak stopped after {s.soak_max_s:g} s at {done:,} requests")
        end = segments[-1]["rss"]
        assert checkpoint is not None
        growth = max((e - c) / c for c, e in zip(checkpoint, end) if c)
        self.results.soak = {"checkpoint_requests": checkpoint_at, "checkpoint_rss": checkpoint,
                             "end_requests": done, "end_rss": end, "growth": growth, "segments": segments}
        log(f"  RSS per worker {[f'{b / MiB:.1f}' for b in checkpoint]} MiB after {checkpoint_at:,}, "
            f"{[f'{b / MiB:.1f}' for b in end]} MiB after {done:,}: growth {growth:+.1%}")

    def _check_accounting(self) -> None:
        """Every answered gateway request was settled in Redis: accounting was really on."""
        time.sleep(0.5)  # settlement runs after each response
        client = redis.Redis(port=self.redis.port)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        settled = sum(int(amount) for t in self.teams
                      for field, amount in client.hgetall(f"gw:{{{t.name}}}:day:{day}").items()
                      if field.startswith(b"requests@"))  # a day's requests, by route
        cost = sum(int(client.hget(f"gw:{{{t.name}}}:day:{day}", "cost_nano") or 0) for t in self.teams)
        client.close()
        answered = sum(r.requests - r.non_2xx for r in self.results.saturation.get("gateway", []))
        answered += sum(r.requests for k, runs in self.results.fixed.items() if k.startswith("gateway|")
                        for r in runs)
        self.results.accounting = {"settled_in_redis": settled, "answered_by_wrk_and_hey": answered,
                                   "cost_nano": cost}
        log(f"accounting: {settled:,} requests settled in Redis for {answered:,} answered (warm-up included)")

    def _litellm(self) -> None:
        s = self.s
        log(f"starting LiteLLM's proxy with {s.workers} workers")
        litellm = self._keep(stack.LiteLLMService(self.dir, s.workers, self.json_upstream.port,
                                                  self.stream_upstream.port).start())
        path = "/v1/chat/completions"
        p = self._prepare(PathUnderTest(
            "litellm", litellm.url + path, litellm.url + path, [stack.LITELLM_KEY], workers=s.workers,
            processes=lambda: self._upstream_processes() + [
                (f"litellm {'supervisor' if i == 0 else f'process {i}'}", pid)
                for i, pid in enumerate(litellm.pids())]))
        log("warming litellm")
        run_wrk(p.json_url, p.wrk_script, connections=8, seconds=max(self.s.warmup_s, 5))
        for rep in range(s.repeat):
            self._saturate(p)
        self._fixed(p, s.low_rate, 1, max(s.rate_s, 10))
        self._sweep(p)
        self._streams(p)
        litellm.stop()


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    load = os.getloadavg()
    return {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "python": platform.python_version(),
            "load_at_start": [round(x, 2) for x in load], "cpu_pressure_at_start": cpu_pressure(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def cpu_pressure() -> str:
    """The kernel's CPU pressure (share of time some task waited for a core): other jobs on the machine."""
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
        return " ".join(field.replace("avg", "") + "%" for field in some[1:4])
    except OSError:
        return "unknown"
