"""The yardstick: the simplest proxy that does the gateway's job, with none of its features.

Read the body, POST it upstream on one shared aiohttp session, return the answer.
Starlette on uvicorn with uvloop and httptools, the gateway's worker count, keep-alive and
upstream connection pool; no keys, quotas, accounting, records or metrics. What the
gateway serves as a share of this, in the same run, is the cost of its features.

    python -m bench.bare --port 8090 --workers 2 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

UPSTREAM_ENV = "BENCH_BARE_UPSTREAM"
KEEPALIVE_S = 5.0  # the gateway's server.keepalive_timeout_s default
session: aiohttp.ClientSession | None = None


async def chat(request: Request) -> Response:
    assert session is not None
    body = await request.body()
    async with session.post(os.environ[UPSTREAM_ENV] + request.url.path, data=body,
                            headers={"content-type": "application/json"}) as answer:
        content = await answer.read()
        return Response(content, answer.status, media_type=answer.content_type)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global session
    # The gateway's pool: no connection cap, kept alive 30 s, no decompression.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    yield
    await session.close()


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--upstream", required=True, help="base URL of the upstream, e.g. http://127.0.0.1:8000")
    args = parser.parse_args()
    os.environ[UPSTREAM_ENV] = args.upstream.rstrip("/")  # the workers inherit it
    uvicorn.run("bench.bare:app", host="127.0.0.1", port=args.port, workers=args.workers, loop="uvloop",
                http="httptools", access_log=False, log_level="warning", timeout_keep_alive=KEEPALIVE_S)


if __name__ == "__main__":
    main()
