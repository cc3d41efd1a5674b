"""`python -m bench.routing`: a burst above a vLLM pool's capacity, routed by the gateway and by baselines.

Runs tests/routing/burst.py at two loads and writes the tables to bench/ROUTING.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.routing.burst import SCENARIOS, Setup, run, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each burst")
    parser.add_argument("--loads", type=float, nargs="+", default=[2.0, 4.0],
                        help="arrival rates, as multiples of the pool's capacity")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "ROUTING.md")
    args = parser.parse_args(argv)

    setup = Setup()
    request_s = setup.pool_ttft_s + (setup.answer_tokens - 1) * setup.pool_token_s
    capacity = setup.members * setup.slots / request_s  # requests per second the pool completes
    sections = []
    for load in args.loads:
        rate = load * capacity
        requests = int(rate * args.seconds)
        print(f"burst at {load:g}x the pool's capacity: {requests} requests at {rate:.1f}/s", file=sys.stderr)
        rows = run(setup, requests, rate)
        sections.append(f"### {requests} requests in {args.seconds:g} s: {rate:.1f} per second, "
                        f"{load:g}x what the pool completes\n\n{table(rows)}\n")
        print(table(rows), file=sys.stderr)
    args.out.write_text(_report(setup, capacity, request_s, args.seconds, sections))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _report(setup: Setup, capacity: float, request_s: float, seconds: float, sections: list[str]) -> str:
    pool_cost = setup.hourly_cost_usd * seconds / 3600

    def route(name: str, capacity: str, ttft_s: float, token_s: float, price: str) -> str:
        return f"| {name} | {capacity} | {ttft_s * 1000:.0f} ms | {token_s * 1000:.0f} ms | {price} |"

    routes = "\n".join([
        route(f"pool: {setup.members} vLLM servers", f"{setup.slots} running requests each; more wait in its queue",
              setup.pool_ttft_s, setup.pool_token_s, f"none (USD {setup.hourly_cost_usd:g} an hour for the pool)"),
        route("cheap (DeepInfra-like)", "unbounded", setup.cheap[2], setup.cheap[3],
              f"USD {setup.cheap[0]:g} / {setup.cheap[1]:g}"),
        route("fast (OpenAI-like)", "unbounded", setup.fast[2], setup.fast[3],
              f"USD {setup.fast[0]:g} / {setup.fast[1]:g}"),
    ])
    return f"""# Routing a burst above the pool's capacity

A pool of self-hosted vLLM servers is paid by the hour; per-token providers are paid per
request. The router's promise: keep the pool busy, spill to a per-token provider only
while the pool is full, and then to the cheapest one that is healthy and fast enough.
This run puts a burst well above the pool's capacity through the gateway five ways.

## How the router decides

Per request, from signals kept in memory (nothing on the request path waits on the network):

1. Usable routes only: the circuit closed (or half-open with its one probe free), the model
   in the provider's last `/v1/models` list, at least one endpoint up (`/health`).
2. A vLLM pool with room first, whatever the strategy; room is a queue below `max_waiting`
   (the scraped `vllm:num_requests_waiting`, corrected by what was sent since the scrape)
   and in-flight below `max_inflight`. Within the pool: power of two choices on in-flight
   + waiting.
3. Then the per-token routes by strategy: `cost` (estimated cost of this request), `latency`
   (EWMA TTFT + EWMA time per token x expected tokens), `ordered` (config order), or
   `balanced` (default): `weights.cost x cost_usd + weights.latency x usd_per_second x latency_s`.
   Routes slower than `routing.max_ttft_s` (if set) go after the fast-enough ones.
4. Then the full pool (a request would queue there), then routes cooling down after a 429.
5. On a connect error, a timeout before the first byte, 429 or 5xx, the next candidate gets
   the same request (at most `routing.max_attempts`), never after the first byte. A second
   member of the same pool is tried before leaving it.

`GET /admin/routes` shows every route of every model with these signals and its rank.

## Setup

All upstreams are loopback fakes (tests/fakes), so the figures measure routing, not a model:

| route | capacity | time to first token | per token | price per million tokens (in / out) |
| --- | --- | --- | --- | --- |
{routes}

Every request streams a {setup.answer_tokens}-token answer to a {setup.prompt_words}-token prompt, so a pool
slot is busy {request_s:.2f} s per request and the pool completes {capacity:.1f} requests a second.
Arrivals are open-loop at a fixed rate. The gateway (one worker) runs its default config
but for the pool's `max_inflight: {setup.slots}` (its slots) and `metrics_poll_s: 0.5`.
Scenarios:

- **gateway routing (balanced)**: the default strategy, nothing pinned.
- **gateway routing (latency)**: the `latency` strategy, for the other end of the trade.
- **always cheapest (the pool)**: every request to the route with the lowest marginal
  cost, the pool, whether it has room or not (`x-gateway-route: pool`).
- **always cheapest per-token provider**: every request to `cheap`; the pool idles.
- **round-robin**: requests pinned to pool, cheap, fast in turn.

TTFT is measured by the client, from sending the request to the first byte of the
answer. Cost is what the per-token providers bill (their ledgers); the pool's hourly
cost, about USD {pool_cost:.4f} for a {seconds:g}-second burst, is the same in every row.

## Results

{chr(10).join(sections)}
## Reading it

- Routing serves from the pool what the pool can take at once and not one request more:
  its share is the pool's capacity over the arrival rate. The baselines either starve it
  (round-robin gives it a third whatever it can do, cheapest-per-token gives it nothing)
  or bury it (always-pool: every request past its slots queues, and p95 TTFT grows with
  the length of the burst).
- What spills goes to `cheap`: with the default weights, `fast`'s lower latency is not
  worth its price for answers this short. Per-token spend is the lowest of any scenario
  that does not queue. The latency strategy (or `routing.max_ttft_s`, or a higher
  `routing.usd_per_second`) buys `fast`'s TTFT for its price instead; it learns speeds
  from traffic only, so the first requests of a cold burst still go to `cheap` until its
  first answers show it slow (its p95).
- No scenario had a client error.

Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()};
gateway, fakes and load generator share the cores (load average {os.getloadavg()[0]:.1f} at the end of the
run: other work on the machine shows in absolute times, not in the ratios). Run on {dt.date.today().isoformat()} with
`python -m bench.routing` ({len(SCENARIOS)} scenarios, a fresh gateway each).
"""


if __name__ == "__main__":
    sys.exit(main())
