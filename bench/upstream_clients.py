"""What the upstream HTTP client costs the gateway per request, against aiohttp's and the least one can.

    python -m bench.upstream_clients [--requests 20000] [--concurrency 1 16] [--rounds 3]

Starts the harness's nginx upstream on a free loopback port and sends it the same chat
completion through (1) the gateway's own `UpstreamClient.open` (gateway/upstream/http.py, with
its deadlines, limits and the answer parsed as JSON), (2) aiohttp's ClientSession as the gateway
used it before (no cookie jar, no decompression, the same headers, reading the whole answer),
and (3) a floor: keep-alive connections on raw asyncio, the request written in one send, the
answer parsed by httptools under a deadline, nothing else. Per cell: process CPU per request
and requests/s, median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httptools
import uvloop

from bench import payloads, stack
from gateway.config import parse_config
from gateway.upstream.client import UpstreamClient

One = Callable[[], Awaitable[None]]


class _Floor(asyncio.Protocol):
    """One keep-alive connection: a request out, its answer's body in."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.answered: asyncio.Future | None = None
        self.parts: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        answered, self.answered = self.answered, None
        if answered is not None:
            answered.set_result(b"".join(self.parts))
        self.parts = []


async def _gateway_client(port: int) -> tuple[One, Callable[[], Awaitable[None]]]:
    provider = parse_config({"providers": {"bench": {"kind": "openai", "api_key": "k",
                                                     "base_url": f"http://127.0.0.1:{port}/v1"}}}, {}).providers["bench"]
    client = UpstreamClient()
    await client.start({"bench": provider})
    url, body = f"http://127.0.0.1:{port}/v1/chat/completions", payloads.request_body(payloads.JSON_MODEL)

    async def one() -> None:
        opened = await client.open(provider, url, body, stream=False, request_id="bench-request")
        opened.response.close()

    return one, client.close


async def _aiohttp_client(port: int) -> tuple[One, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                                    auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
    url, body = f"http://127.0.0.1:{port}/v1/chat/completions", payloads.request_body(payloads.JSON_MODEL)
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "accept-encoding": "gzip, deflate", "user-agent": "bench", "authorization": "Bearer k",
               "x-request-id": "bench-request"}
    timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=30)

    async def one() -> None:
        async with asyncio.timeout(10):
            response = await session.post(url, data=body, headers=headers, timeout=timeout)
        async with asyncio.timeout(10):
            await response.read()
        response.close()

    return one, session.close


async def _floor_client(port: int) -> tuple[One, Callable[[], Awaitable[None]]]:
    loop = asyncio.get_running_loop()
    idle: list[_Floor] = []
    body = payloads.request_body(payloads.JSON_MODEL)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer k\r\nx-request-id: bench-request\r\ncontent-length: {len(body)}\r\n\r\n").encode()

    async def one() -> None:
        connection = idle.pop() if idle else (await loop.create_connection(_Floor, "127.0.0.1", port))[1]
        connection.answered = loop.create_future()
        assert connection.transport is not None
        connection.transport.write(head + body)
        async with asyncio.timeout(10):
            await connection.answered
        idle.append(connection)

    async def close() -> None:
        for connection in idle:
            if connection.transport is not None:
                connection.transport.close()

    return one, close


async def _measure(make: Callable[[int], Awaitable[tuple[One, Callable[[], Awaitable[None]]]]], port: int,
                   requests: int, concurrency: int) -> tuple[float, float]:
    one, close = await make(port)
    try:
        for _ in range(200):  # connections opened, code warm
            await one()

        async def worker(count: int) -> None:
            for _ in range(count):
                await one()

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await close()
    done = requests // concurrency * concurrency
    return cpu / done * 1e6, done / wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_clients", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    clients = {"gateway's UpstreamClient": _gateway_client, "aiohttp ClientSession (before)": _aiohttp_client,
               "floor (asyncio + httptools)": _floor_client}
    with tempfile.TemporaryDirectory(prefix="bench-upstream-clients-") as tmp:
        upstream = stack.start_nginx_upstream(Path(tmp))
        try:
            print("| client | concurrency | CPU µs per request | requests/s |")
            print("| --- | --- | --- | --- |")
            for concurrency in args.concurrency:
                for name, make in clients.items():
                    cells = [uvloop.run(_measure(make, upstream.port, args.requests, concurrency))
                             for _ in range(args.rounds)]
                    cpu = statistics.median(c for c, _ in cells)
                    rate = statistics.median(r for _, r in cells)
                    print(f"| {name} | {concurrency} | {cpu:.1f} | {rate:,.0f} |")
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
