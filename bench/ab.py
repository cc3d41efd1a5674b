"""A/B: two source trees of the gateway, measured in alternation against the same servers.

Both gateways run side by side on one upstream and one Redis (each idle while the other
is measured); rounds alternate which goes first, so drift in the machine's load falls on
both. Besides requests/s, each saturation run reports the workers' CPU time per request,
which another engineer's job on the same cores disturbs far less than throughput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench import payloads, redis_cost, stack
from bench.fixed_rate import run_hey
from bench.processes import Service, raise_open_files_limit
from bench.report import median
from bench.saturation import run_wrk, write_script
from bench.streams import streams_at_rate
from bench.usage import cpu_seconds


@dataclass
class Side:
    name: str
    source: Path
    gateway: stack.GatewayService | None = None
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    sat_p99_ms: list[float] = field(default_factory=list)  # closed loop: pauses of a worker's loop show here
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    fixed_cpu_us: list[float] = field(default_factory=list)  # at the fixed rate: no queueing to flatter it
    redis_us: list[float] = field(default_factory=list)  # Redis's CPU per request at saturation
    ttfb_p50_ms: list[float] = field(default_factory=list)  # streams, when measured
    ttfb_p99_ms: list[float] = field(default_factory=list)
    errors: int = 0


def compare(directory: Path, a: Path, b: Path, *, workers: int, rounds: int, seconds: float, connections: int,
            rate: float, upstream: str, streams: float = 0.0) -> str:
    """Measure both trees `rounds` times each and return a Markdown table of medians; `streams`:
    also start that many streams a second for `seconds` (as the full run's streaming phase)."""
    directory.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    services: list[Service] = []
    sides = [Side("A", a.resolve()), Side("B", b.resolve())]
    direct: list[float] = []
    try:
        backends = stack.start_backends(directory, upstream, services)
        json_up, stream_up, redis = backends.json, backends.stream, backends.redis
        teams = stack.bench_teams(4)
        body = payloads.request_body(payloads.JSON_MODEL)
        stream_body = payloads.request_body(payloads.STREAM_MODEL, stream=True)
        body_path = directory / "body.json"
        body_path.write_bytes(body)
        script = write_script(directory, "ab", body, [t.key for t in teams])
        for side in sides:
            side.gateway = stack.start_gateway(directory, f"gateway-{side.name}", workers, redis.port, json_up.port,
                                               stream_up.port, teams, source=side.source)
            services.append(side.gateway)
            run_wrk(side.gateway.url + "/v1/chat/completions", script, connections=16, seconds=3)
        direct_url = f"http://127.0.0.1:{json_up.port}/v1/chat/completions"
        for round_ in range(rounds):
            for side in sides if round_ % 2 == 0 else sides[::-1]:
                assert side.gateway is not None
                url = side.gateway.url + "/v1/chat/completions"
                pids = side.gateway.worker_pids()
                before = sum(cpu_seconds(p) or 0 for p in pids)
                redis_before = redis_cost.snapshot(redis.port)
                sat = run_wrk(url, script, connections=connections, seconds=seconds)
                cpu = sum(cpu_seconds(p) or 0 for p in pids) - before
                side.redis_us.append(redis_cost.cost(redis_before, redis_cost.snapshot(redis.port),
                                                     sat.requests).cpu_us_per_request)
                side.rps.append(sat.rps)
                side.sat_p99_ms.append(sat.p99_ms)
                side.cpu_us.append(cpu / max(sat.requests, 1) * 1e6)
                side.errors += sat.errors
                before = sum(cpu_seconds(p) or 0 for p in pids)
                fixed = run_hey(url, body_path, teams[0].key, rate=rate, connections=1, seconds=seconds)
                cpu = sum(cpu_seconds(p) or 0 for p in pids) - before
                side.fixed_cpu_us.append(cpu / max(fixed.requests, 1) * 1e6)
                side.p50_ms.append(fixed.p50_ms)
                side.p99_ms.append(fixed.p99_ms)
                side.errors += fixed.errors
                if streams:
                    run = streams_at_rate(url, stream_body, teams[0].key, rate=streams, seconds=seconds)
                    side.ttfb_p50_ms.append(run.ttfb_p50_ms)
                    side.ttfb_p99_ms.append(run.ttfb_p99_ms)
                    side.errors += run.streams - run.ok
            direct.append(run_hey(direct_url, body_path, "", rate=rate, connections=1, seconds=seconds).p50_ms)
    finally:
        for service in reversed(services):
            service.stop()
    return render(sides, direct, rounds=rounds, seconds=seconds, connections=connections, rate=rate,
                  workers=workers)


def render(sides: list[Side], direct_p50: list[float], *, rounds: int, seconds: float, connections: int,
           rate: float, workers: int) -> str:
    a, b = sides

    def change(x: list[float], y: list[float]) -> str:
        mx, my = median(x), median(y)
        return "–" if not mx or math.isnan(mx) else f"{(my - mx) / mx:+.0%}"

    rows = [
        ("requests/s (wrk saturation)", a.rps, b.rps, ",.0f"),
        ("p99 at saturation (ms)", a.sat_p99_ms, b.sat_p99_ms, ".1f"),
        ("worker CPU per request at saturation (us)", a.cpu_us, b.cpu_us, ",.0f"),
        ("Redis CPU per request at saturation (us)", a.redis_us, b.redis_us, ",.1f"),
        (f"worker CPU per request at {rate:g} req/s (us)", a.fixed_cpu_us, b.fixed_cpu_us, ",.0f"),
        (f"p50 at {rate:g} req/s paced (ms)", a.p50_ms, b.p50_ms, ".2f"),
        (f"p99 at {rate:g} req/s paced (ms)", a.p99_ms, b.p99_ms, ".2f"),
        ("stream time to first byte p50 (ms)", a.ttfb_p50_ms, b.ttfb_p50_ms, ".2f"),
        ("stream time to first byte p99 (ms)", a.ttfb_p99_ms, b.ttfb_p99_ms, ".2f"),
    ]
    lines = [(f"A: {a.source}\nB: {b.source}\n{workers} workers, {rounds} alternating rounds of {seconds:g} s "
             f"(wrk {connections} connections, then hey paced at {rate:g} req/s); medians [min–max]. "
             f"Direct p50 at that rate: {median(direct_p50):.2f} ms. Errors: A {a.errors}, B {b.errors}."), "",
             "| figure | A | B | B against A |", "| --- | --- | --- | --- |"]
    for label, x, y, fmt in rows:
        lines.append(f"| {label} | {_spread(x, fmt)} | {_spread(y, fmt)} | {change(x, y)} |")
    lines += ["", "Every round, A / B requests/s: " + ", ".join(f"{x:,.0f} / {y:,.0f}" for x, y in zip(a.rps, b.rps)),
              "Every round, A / B CPU us per request: " + ", ".join(f"{x:,.0f} / {y:,.0f}"
                                                                  for x, y in zip(a.cpu_us, b.cpu_us))]
    return "\n".join(lines) + "\n"


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    return f"{format(median(values), fmt)} [{format(min(values), fmt)}–{format(max(values), fmt)}]"
