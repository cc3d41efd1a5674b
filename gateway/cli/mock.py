"""`gateway mock`: the built-in mock upstream alone, an OpenAI-compatible fake for load tests."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from pydantic import ValidationError

from gateway.config.mock import MockConfig
from gateway.mock import MockServer


def add_command(commands: Any) -> None:
    mock = commands.add_parser("mock", help="run the built-in mock upstream alone (a fake provider for load tests)")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9000)
    mock.add_argument("--first-token-s", type=float, default=0.0, help="latency to the first token")
    mock.add_argument("--per-token-s", type=float, default=0.0, help="latency between tokens")
    mock.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500/503/429")
    mock.add_argument("--answer-tokens", type=int, default=16, help="tokens in an answer max_tokens does not cut")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; the settings are checked as a provider's would be."""
    try:
        config = MockConfig.model_validate({
            "latency": {"first_token_s": args.first_token_s, "per_token_s": args.per_token_s},
            "error_rate": args.error_rate, "answer_tokens": args.answer_tokens})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        print(f"mock: {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(MockServer(config, args.host, args.port)))
    return 0


async def _serve(server: MockServer) -> None:
    await server.start()
    print(f"mock upstream at {server.base_url} (set it as a provider's base_url)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
