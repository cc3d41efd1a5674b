"""What each Redis client costs the gateway per admission and settlement, against today's.

    python -m bench.redis_clients [--scale 1.0] [--concurrency 1 32 256] [--rounds 3] [--only WORD...] [--tls] [--replica] [--cluster]

The store pipelines its hot-path calls on redis-py's own connections (gateway/store/batch.py)
for one reason: the admissions and settlements issued in one event-loop turn leave in one
write and share a round trip, at the CPU cost of the hand-written client it replaced. This starts its
own redis-server on a free loopback port (with --tls, a TLS one with a throwaway CA), and
drives RedisStore.admit and .settle with the real scripts, keys and arguments; only the call
that sends a script changes between clients. Per cell: process CPU time (all threads, so a
client's own threads count) over a fixed number of admit+settle pairs, wall-clock pairs/s,
and the server's socket reads per pair (2 when calls are not batched). Takes 2-4 minutes.
Needs `pip install 'redis[hiredis]' coredis valkey-glide`; a client that is missing shows as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvloop
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import NoScriptError

from bench.redis_servers import node_urls, redis_cluster, redis_server, replicated
from gateway.ids import new_id
from gateway.store.base import Hold, Limits, UsageRecord
from gateway.store.redis import RedisStore
from gateway.store.redis_scripts import SCRIPTS

Run = Callable[[str, Sequence[Any], Sequence[Any]], Awaitable[Any]]  # (script name, keys, args) -> reply
Opener = Callable[[str], contextlib.AbstractAsyncContextManager[Run | None]]  # URL -> Run; None: today's

TEAMS = [f"team-{n}" for n in range(8)]  # one hash tag, hence one cluster slot, each
LIMITS = Limits(rpm=10**7, tpm=10**10, budget_day_nano=10**15, budget_month_nano=2 * 10**15)  # checked, never refusing
# Generous: 256 callers opening TLS connections on two cores take longer than the gateway's 0.5 s,
# and the bench measures CPU, not how the store copes with a slow Redis.
TIMEOUT_S = 10.0
# A connection per caller for the per-call clients: with fewer, redis-py's blocking pool lets
# callers that just released a connection take it again while others wait past any timeout.
POOL = 512
PAIRS = {1: 3_000, 32: 8_000, 256: 8_000}  # per cell; a few seconds each on two cores


@dataclass(frozen=True)
class Cell:
    cpu_us: float  # process CPU per admit+settle pair
    rate: float  # pairs per wall-clock second
    reads: float  # the server's socket reads per pair





# The clients: each opener yields how it runs one script.


def _redis_py(url: str) -> Redis:
    return Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=POOL, timeout=TIMEOUT_S))


@contextlib.asynccontextmanager
async def redis_py_per_call(url: str) -> AsyncIterator[Run]:
    """redis.asyncio as the rest of the store uses it: a pooled connection per call, no batching."""
    redis = _redis_py(url)

    async def run(name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        script = SCRIPTS[name]
        try:
            return await redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(script.source, len(keys), *keys, *args)

    try:
        yield run
    finally:
        await redis.aclose()


class Batcher:
    """Scripts called in one loop turn, sent as one pipeline: redis-py does not pipeline by itself."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._loop = asyncio.get_running_loop()
        self._queued: list[tuple[str, Sequence[Any], Sequence[Any], asyncio.Future]] = []
        self._sending: set[asyncio.Task] = set()  # held, so a batch in flight is not collected

    def run(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future:
        if not self._queued:
            # A task's first step is itself scheduled with call_soon: the batch is sent once
            # every caller that is ready in this turn has queued its call.
            task = self._loop.create_task(self._send())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        future = self._loop.create_future()
        self._queued.append((name, keys, args, future))
        return future

    async def _send(self) -> None:
        batch, self._queued = self._queued, []
        try:
            replies = await self._pipeline(batch)
            missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:  # Redis restarted or its scripts were flushed: load them, send those calls again
                for name in {batch[n][0] for n in missing}:
                    await self._redis.script_load(SCRIPTS[name].source)
                for n, reply in zip(missing, await self._pipeline([batch[n] for n in missing])):
                    replies[n] = reply
        except BaseException as exc:  # noqa: BLE001 - every caller hears of a lost batch
            replies = [exc] * len(batch)
        for (*_, future), reply in zip(batch, replies):
            if not future.done():
                future.set_exception(reply) if isinstance(reply, BaseException) else future.set_result(reply)

    async def _pipeline(self, batch: list[tuple[str, Sequence[Any], Sequence[Any], asyncio.Future]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, keys, args, _ in batch:
                pipe.evalsha(SCRIPTS[name].sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)


@contextlib.asynccontextmanager
async def redis_py_batched(url: str, hiredis_encoding: bool = False) -> AsyncIterator[Run]:
    redis = _redis_py(url)
    if hiredis_encoding:
        # redis.asyncio encodes commands in Python (its sync client uses hiredis): profiled, most of its CPU.
        # The URL chose the connection class (TCP, TLS, unix); keep it, with hiredis's encoder.
        import hiredis

        def pack_command(self: Any, name: str, *args: Any) -> list[bytes]:
            return [hiredis.pack_command((*name.split(), *args))]  # "SCRIPT LOAD" is two words

        base = redis.connection_pool.connection_class
        redis.connection_pool.connection_class = type(f"Hiredis{base.__name__}", (base,), {"pack_command": pack_command})
    try:
        yield Batcher(redis).run
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def coredis_client(url: str) -> AsyncIterator[Run]:
    """coredis multiplexes callers on one connection, whose writer task sends all that is queued."""
    import coredis
    from coredis.exceptions import NoScriptError as CoreNoScript

    client = coredis.Redis.from_url(url, stream_timeout=TIMEOUT_S)  # reads ?ssl_ca_certs= itself

    async def run(name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        script = SCRIPTS[name]
        try:
            return await client.evalsha(script.sha, keys, args)
        except CoreNoScript:
            return await client.eval(script.source, keys, args)

    async with client:
        yield run


@contextlib.asynccontextmanager
async def glide_client(url: str) -> AsyncIterator[Run]:
    """GLIDE: commands go to a Rust core (its own threads) that pipelines each connection."""
    import glide

    advanced = None
    # No URL parser in GLIDE: the address, TLS, credentials and database are given one by one.
    parts = urlsplit(url)
    if ca_file := parse_qs(parts.query).get("ssl_ca_certs"):
        tls = glide.TlsAdvancedConfiguration(root_pem_cacerts=Path(ca_file[0]).read_bytes())
        advanced = glide.AdvancedGlideClientConfiguration(tls_config=tls)
    config = glide.GlideClientConfiguration([glide.NodeAddress(parts.hostname, parts.port)], use_tls=bool(advanced),
                                            request_timeout=int(TIMEOUT_S * 1000), advanced_config=advanced)
    client = await glide.GlideClient.create(config)
    scripts = {name: glide.Script(SCRIPTS[name].source) for name in ("admit", "settle")}

    async def run(name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        # invoke_script sends EVALSHA and loads the script on NOSCRIPT itself.
        texts = [arg if isinstance(arg, bytes | str) else str(arg) for arg in args]  # GLIDE takes no ints
        return await client.invoke_script(scripts[name], keys=list(keys), args=texts)

    try:
        yield run
    finally:
        await client.close()


CLIENTS: dict[str, Opener] = {
    # No Run: RedisStore as shipped (gateway.store.batch on redis-py's connections).
    "today: RedisStore as shipped": lambda url: contextlib.nullcontext(),
    "redis-py + hiredis, per call": redis_py_per_call,
    "redis-py + hiredis, batched per turn": redis_py_batched,
    "redis-py + hiredis, batched, hiredis encoding": functools.partial(redis_py_batched, hiredis_encoding=True),
    "coredis": coredis_client,
    "valkey-glide": glide_client,
}
# --replica: the shipped store against a primary with one replica, settlements waiting for it or not.
REPLICA_CLIENTS: dict[str, Opener] = {
    "shipped, settle_replicas: 0": lambda url: contextlib.nullcontext(0),
    "shipped, settle_replicas: 1 (a WAIT per loop turn)": lambda url: contextlib.nullcontext(1),
}


class _BenchStore(RedisStore):
    """RedisStore with its hot-path call swapped, so every client gets the same keys and arguments."""

    def __init__(self, url: str, run: Run) -> None:
        super().__init__(url, TIMEOUT_S, max_connections=POOL)
        self._bench_run = run

    async def _fast_run(self, name: str, keys: Sequence[str], args: Sequence[Any], replicas: int = 0) -> Any:
        return await self._bench_run(name, keys, args)


async def _pair(store: RedisStore, team: str) -> None:
    """One request's store traffic: admission with its worst case, then settlement with what it used."""
    now = datetime.now(UTC)
    day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
    hold = Hold(team=team, tokens=1_250, cost_nano=937_500, day=day, month=month, tpm_floor=250)
    admission = await store.admit(hold, LIMITS)
    if not admission.admitted:
        raise RuntimeError(f"admission refused by {admission.refused_by}: the bench's limits are too low")
    usage = UsageRecord(team=team, key_id="key-" + team, model="gpt-4o-mini", provider="openai",
                        prompt_tokens=250, completion_tokens=412, cost_nano=284_700, provider_cost_nano=None,
                        status=200, latency_ms=840, time_ms=int(now.timestamp() * 1000), day=day, month=month,
                        request_id=new_id())
    await store.settle(hold.reservation_id, usage)


async def _callers(store: RedisStore, concurrency: int, pairs: int) -> None:
    async def caller(n: int) -> None:
        for _ in range(pairs // concurrency):
            await _pair(store, TEAMS[n % len(TEAMS)])

    await asyncio.gather(*(caller(n) for n in range(concurrency)))


async def _warm_up(store: RedisStore, concurrency: int, pairs: int) -> None:
    """Script loads, each team's first settlement, and connections opened a few at a time.

    At most 32 more callers a step: a per-call client opening a connection for each of 256
    callers at once over TLS spends seconds building SSL contexts, and times out.
    """
    for team in TEAMS:
        await _pair(store, team)
    level = 1
    while level < concurrency:
        level = min(2 * level, level + 32, concurrency)
        await _callers(store, level, 4 * level)
    await _callers(store, concurrency, max(concurrency, pairs))


async def measure(opener: Opener, url: str, concurrency: int, pairs: int) -> Cell:
    """CPU and wall time of `pairs` pairs from `concurrency` callers, after a warm-up left unmeasured."""
    admins = [_redis_py(node) for node in node_urls(url)]
    try:
        for admin in admins:
            await admin.flushall()  # every cell starts from the same keys
        async with opener(url) as run:
            if run is None or isinstance(run, int):  # the shipped store; an int: its settle_replicas
                store = RedisStore(url, TIMEOUT_S, max_connections=POOL, replicas=run or 0)
            else:
                store = _BenchStore(url, run)
            try:
                await _warm_up(store, concurrency, pairs // 10)
                reads = await _server_reads(admins)
                wall, cpu = time.perf_counter(), time.process_time()
                await _callers(store, concurrency, pairs)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                reads = await _server_reads(admins) - reads
            finally:
                await store.close()
    finally:
        for admin in admins:
            await admin.aclose()
    done = pairs // concurrency * concurrency
    return Cell(cpu_us=cpu / done * 1e6, rate=done / wall, reads=reads / done)


async def _server_reads(admins: list[Redis]) -> int:
    """The server's reads of client sockets: two a pair when nothing is batched, fewer when calls share writes."""
    return sum([int((await admin.info("stats"))["total_reads_processed"]) for admin in admins])


async def _store_overhead(pairs: int) -> float:
    """CPU per pair of RedisStore's own Python (ids, JSON, keys, replies) with a Redis that answers instantly."""
    async def run(name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return [1, b"", 0, 1, 1_250, 60_000] if name == "admit" else 1

    store = _BenchStore("redis://127.0.0.1:1/0", run)
    store._known_teams.update(TEAMS)  # no first-settlement pipeline: that one needs a real Redis
    cpu = time.process_time()
    await _callers(store, 1, pairs)
    return (time.process_time() - cpu) / pairs * 1e6


Results = dict[str, dict[int, list[Cell | str]]]  # client -> concurrency -> each round's cell, or its failure


async def run_all(url: str, clients: dict[str, Opener], levels: list[int], scale: float,
                  rounds: int) -> Results:
    """Every client at every concurrency, `rounds` times, interleaved so that drift hits every client alike."""
    found: Results = {name: {level: [] for level in levels} for name in clients}
    names = list(clients)
    for n in range(rounds):
        for level in levels:
            for name in names[n % len(names):] + names[:n % len(names)]:  # no client always goes first
                started = time.monotonic()
                try:
                    cell: Cell | str = await measure(clients[name], url, level, int(PAIRS.get(level, 5_000) * scale))
                except Exception as exc:  # noqa: BLE001 - a client that fails is reported, not fatal
                    cell = f"{exc.__class__.__name__}: {exc}"[:160]
                found[name][level].append(cell)
                shown = cell if isinstance(cell, str) else f"{cell.cpu_us:.0f} µs/pair, {cell.rate:,.0f} pairs/s"
                print(f"  round {n + 1}, {level} callers, {name}: {shown} ({time.monotonic() - started:.1f} s)",
                      file=sys.stderr, flush=True)
    return found


def _median(cells: list[Cell]) -> Cell:
    return Cell(*(statistics.median(getattr(c, f.name) for c in cells) for f in fields(Cell)))


def _summary(runs: list[Cell | str]) -> tuple[Cell | None, float, list[str]]:
    """The median cell of the rounds, the CPU's half-range over them as a fraction, and the failures."""
    cells, failed = [c for c in runs if isinstance(c, Cell)], [f for f in runs if isinstance(f, str)]
    if not cells:
        return None, 0.0, failed
    middle = _median(cells)
    return middle, (max(c.cpu_us for c in cells) - min(c.cpu_us for c in cells)) / 2 / middle.cpu_us, failed


def table(results: Results, levels: list[int]) -> str:
    """Markdown, a row per client: per concurrency, median CPU µs per pair ± its spread over the
    rounds (× the first row's), median pairs/s, and the server's socket reads per pair."""
    baseline = {level: _summary(runs)[0] for level, runs in next(iter(results.values())).items()}
    head = "| client | " + " | ".join(f"{n} caller{'s' * (n > 1)}: CPU µs/pair (× today) | pairs/s | reads/pair"
                                 for n in levels)
    lines, failures = [head + " |", "|---|" + "---:|---:|---:|" * len(levels)], []
    for name, by_level in results.items():
        row = [name]
        for level in levels:
            cell, spread, failed = _summary(by_level[level])
            failures += [f"{name}, {level} callers: {f}" for f in failed]
            if cell is None:
                row += ["failed", "", ""]
                continue
            base = baseline[level]
            text = f"{cell.cpu_us:.0f}" + (f" ±{spread:.0%}" if len(by_level[level]) > 1 else "")
            text += f" ({cell.cpu_us / base.cpu_us:.2f}×)" if base else ""
            text += f" [{len(failed)} of {len(by_level[level])} failed]" if failed else ""
            row += [text, f"{cell.rate:,.0f}", f"{cell.reads:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + [f"\n- failed: {f}" for f in dict.fromkeys(failures)])


def _versions() -> str:
    found = []
    for package in ("redis", "hiredis", "coredis", "valkey-glide", "uvloop"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{package} {importlib.metadata.version(package)}")
    server = subprocess.run(["redis-server", "--version"], check=True, capture_output=True, text=True).stdout.split()
    return ", ".join(found + [f"redis-server {server[2].removeprefix('v=')}", f"{os.cpu_count()} CPUs"])


async def _main(args: argparse.Namespace) -> None:
    # One not installed shows as failed, with its ImportError. Today's is always measured: the others' yardstick.
    clients = {name: opener for n, (name, opener) in enumerate(CLIENTS.items())
               if n == 0 or not args.only or any(word in name for word in args.only)}
    if args.replica:
        clients = REPLICA_CLIENTS
    if args.cluster:  # the other clients here speak to one server
        clients = {name: opener for n, (name, opener) in enumerate(clients.items()) if n == 0}
    if args.tls:  # today's store is this very path over TLS; opening its 256 connections takes ~10 s a cell
        clients.pop("redis-py + hiredis, per call", None)
    print(_versions())
    print(f"RedisStore's own Python per pair, Redis answering instantly: {await _store_overhead(20_000):.0f} µs\n")
    pairs = ", ".join(f"{int(PAIRS.get(n, 5_000) * args.scale):,} at {n}" for n in args.concurrency)
    print(f"pairs measured per cell: {pairs}; {args.rounds} rounds, median kept\n")
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp, (
            redis_cluster(Path(tmp)) if args.cluster else redis_server(Path(tmp), args.tls)) as url:
        async with replicated(Path(tmp), url) if args.replica else contextlib.nullcontext():
            results = await run_all(url, clients, args.concurrency, args.scale, args.rounds)
    what = "a Redis Cluster of three primaries" if args.cluster else "TLS (rediss://)" if args.tls else "plain TCP"
    what += ", a primary with one replica" if args.replica else ""
    print(f"### {what}\n\n{table(results, args.concurrency)}\n", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_clients", description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(PAIRS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the pairs measured per cell")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every cell; the median is kept")
    parser.add_argument("--only", nargs="+", help="only the clients whose name contains one of these words")
    parser.add_argument("--tls", action="store_true", help="over TLS (rediss://, a throwaway CA) instead of plain TCP")
    parser.add_argument("--cluster", action="store_true",
                        help="against a Redis Cluster of three primaries (the shipped store only)")
    parser.add_argument("--replica", action="store_true",
                        help="the shipped store against a primary with a replica, with and without settle_replicas")
    args = parser.parse_args(argv)
    if args.replica and (args.tls or args.cluster):
        parser.error("--replica runs on plain TCP, one server")
    started = time.monotonic()
    uvloop.run(_main(args))
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
