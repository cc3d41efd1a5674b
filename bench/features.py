"""What quotas and accounting cost: one gateway worker, with them and without, in alternating rounds.

    python -m bench.features [--rounds 3] [--seconds 8]

"core" is the proxy path alone: no teams (no keys, no quotas), the in-process store.
"everything on" adds keys, rpm, tpm, day and month budgets reserved and settled in a
Redis of its own, and the per-request record. Both export metrics. Non-streaming chat,
nginx as the upstream, wrk with 32 connections.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench import payloads
from bench.processes import free_port
from bench.saturation import run_wrk, write_script
from bench.stack import GatewayService, bench_teams, gateway_config, start_nginx_upstream, start_redis


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.features")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        directory = Path(tmp)
        upstream = start_nginx_upstream(directory)
        redis = start_redis(directory)
        teams = bench_teams(1)
        full = gateway_config(free_port(), 1, redis.port, upstream.port, upstream.port, teams)
        core = {**full, "teams": {}, "store": {"url": "memory://"}, "server": {**full["server"], "port": free_port()}}
        body = payloads.request_body(payloads.JSON_MODEL)
        sides = {"core": (core, []), "everything on": (full, [teams[0].key])}
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        try:
            for round_number in range(args.rounds):
                for name, (config, keys) in sides.items():
                    gateway = GatewayService(f"gw-{round_number}-{name.split()[0]}", config, 1, directory).start()
                    try:
                        url = gateway.url + "/v1/chat/completions"
                        script = write_script(directory, name.split()[0], body, keys)
                        run_wrk(url, script, connections=args.connections, seconds=2)  # warm up
                        result = run_wrk(url, script, connections=args.connections, seconds=args.seconds)
                        assert result.errors == 0, f"{name}: {result.errors} errors"
                        figures[name].append((result.rps, result.p50_ms, result.p99_ms))
                    finally:
                        gateway.stop()
        finally:
            redis.stop()
            upstream.stop()
    print(report(figures, args))


def report(figures: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace) -> str:
    lines = [f"One worker, non-streaming chat, wrk -c{args.connections} for {args.seconds:g} s, "
             f"{args.rounds} alternating rounds (median [min-max])", "",
             "| path | requests/s | p50 ms | p99 ms |", "| --- | --- | --- | --- |"]
    for name, rows in figures.items():
        rps = [r[0] for r in rows]
        lines.append(f"| {name} | {statistics.median(rps):,.0f} [{min(rps):,.0f}-{max(rps):,.0f}] | "
                     f"{statistics.median(r[1] for r in rows):.2f} | {statistics.median(r[2] for r in rows):.2f} |")
    core, full = (statistics.median(r[0] for r in figures[name]) for name in figures)
    lines += ["", f"Quotas and accounting cost {100 * (1 - full / core):.1f}% of the core path's throughput."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
