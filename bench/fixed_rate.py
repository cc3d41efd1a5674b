"""Latency at a fixed request rate with hey, in a named arrival shape.

hey runs `connections` workers, each paced by its own ticker at rate/connections and
waiting for its answer before the next tick: the workers tick in lock-step, so requests
arrive in bursts of `connections` every connections/rate seconds. One connection gives
evenly paced arrivals (shape "paced"); ten give bursts of ten ("bursts of 10"). A worker
whose answer outlasts its tick skips ticks, so the achieved rate is reported beside the
offered one. Latencies come from hey's per-request CSV (0.1 ms resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench.processes import run_client
from bench.stack import require


@dataclass(slots=True)
class FixedRate:
    """One hey run's figures; latencies in milliseconds."""

    shape: str
    connections: int
    offered_rps: float
    achieved_rps: float
    requests: int
    errors: int  # non-2xx answers and failed requests
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    client_cpu_s: float


def shape_name(connections: int) -> str:
    return "paced" if connections == 1 else f"bursts of {connections}"


def run_hey(url: str, body_path: Path, key: str, *, rate: float, connections: int, seconds: float,
            timeout_s: float = 30.0) -> FixedRate:
    """Offer `rate` requests/s over `connections` for `seconds`; the latency of every answer."""
    hey = require("hey")
    argv = [hey, "-z", f"{max(seconds, 1):g}s", "-c", str(connections), "-q", f"{rate / connections:g}",
            "-t", str(int(timeout_s)), "-m", "POST", "-T", "application/json", "-D", str(body_path),
            "-disable-compression", "-o", "csv"]
    if key:
        argv += ["-H", f"Authorization: Bearer {key}"]
    returncode, out, err, cpu = run_client([*argv, url], timeout_s=seconds + timeout_s + 10)
    if returncode != 0:
        raise RuntimeError(f"hey failed ({returncode}): {err.decode(errors='replace')}")
    latencies: list[float] = []
    errors = 0
    for line in out.decode().splitlines()[1:]:
        fields = line.split(",")
        if len(fields) < 8:
            continue
        status = int(fields[6]) if fields[6].isdigit() else 0
        if not 200 <= status < 300:
            errors += 1
            continue
        latencies.append(float(fields[0]) * 1000)
    # Failed requests (refused connections, timeouts) have no CSV row: they show as a
    # shortfall of the achieved rate against the offered one.
    latencies.sort()
    return FixedRate(
        shape=shape_name(connections), connections=connections, offered_rps=rate,
        achieved_rps=len(latencies) / max(seconds, 1), requests=len(latencies), errors=errors,
        p50_ms=percentile(latencies, 50), p90_ms=percentile(latencies, 90), p99_ms=percentile(latencies, 99),
        p999_ms=percentile(latencies, 99.9), max_ms=latencies[-1] if latencies else math.nan,
        mean_ms=sum(latencies) / len(latencies) if latencies else math.nan, client_cpu_s=cpu)


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list; NaN for none."""
    if not ordered:
        return math.nan
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]
