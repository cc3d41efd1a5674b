"""Saturation throughput with wrk: a fixed number of connections, each sending as fast as answered.

A closed loop: it finds the most requests per second a path serves, and its latency
is that of a full queue. The Lua script gives every path the same request bytes,
cycles the API keys across requests, and prints wrk's figures as one JSON line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.processes import run_client
from bench.stack import require

_MARK = "BENCH_RESULT "
_SCRIPT = """\
local body = [==[%(body)s]==]
local keys = {%(keys)s}
local prepared = {}
local counter = 0

function init(args)
  for i, key in ipairs(keys) do
    local headers = {["Content-Type"] = "application/json"}
    if key ~= "" then headers["Authorization"] = "Bearer " .. key end
    prepared[i] = wrk.format("POST", nil, headers, body)
  end
end

function request()
  counter = counter + 1
  return prepared[counter %% #prepared + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%(mark)s{"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"mean_us":%%.1f,"max_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"p999_us":%%d}\\n', summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
"""


@dataclass(slots=True)
class Saturation:
    """One wrk run's figures; latencies in milliseconds."""

    connections: int
    requests: int
    seconds: float
    rps: float
    errors: int  # socket errors, timeouts and non-2xx answers together
    non_2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    client_cpu_s: float  # wrk's own CPU time, to show the load generator was not the limit


def write_script(directory: Path, name: str, body: bytes, keys: list[str]) -> Path:
    path = directory / f"wrk-{name}.lua"
    lua_keys = ", ".join(f'"{k}"' for k in keys) or '""'
    path.write_text(_SCRIPT % {"body": body.decode(), "keys": lua_keys, "mark": _MARK})
    return path


def run_wrk(url: str, script: Path, *, connections: int, seconds: float, timeout_s: float = 30.0,
            threads: int = 1) -> Saturation:
    """Run wrk against `url` for `seconds` and return what it measured."""
    wrk = require("wrk")
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(int(round(seconds)), 1)}s",
            f"--timeout={int(timeout_s)}s", "-s", str(script), url]
    returncode, out, err, client_cpu = run_client(argv)
    if returncode != 0:
        raise RuntimeError(f"wrk failed ({returncode}): {err.decode(errors='replace')}")
    line = next((text for text in out.decode().splitlines() if text.startswith(_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out.decode(errors='replace')}")
    r = json.loads(line[len(_MARK):])
    duration = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["status"]
    ok = max(r["requests"] - r["status"], 0)
    return Saturation(
        connections=connections, requests=r["requests"], seconds=duration, rps=ok / duration, errors=errors,
        non_2xx=r["status"], p50_ms=r["p50_us"] / 1000, p90_ms=r["p90_us"] / 1000, p99_ms=r["p99_us"] / 1000,
        p999_ms=r["p999_us"] / 1000, mean_ms=r["mean_us"] / 1000, max_ms=r["max_us"] / 1000,
        client_cpu_s=client_cpu)
