"""The pipelined Redis client of the hot path: wire format, ordering, timeouts, reconnects."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.store.resp import ReplyError, RespClient, encode, parse


def test_commands_are_encoded_as_arrays_of_bulk_strings():
    assert encode(("EVALSHA", "ab", 2, b"k\r\n")) == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$3\r\nk\r\n\r\n"


@pytest.mark.parametrize("wire, value", [
    (b":42\r\n", 42), (b"$3\r\nabc\r\n", b"abc"), (b"$-1\r\n", None), (b"+OK\r\n", b"OK"),
    (b"*3\r\n:1\r\n$1\r\nx\r\n*1\r\n:2\r\n", [1, b"x", [2]]), (b"*-1\r\n", None),
])
def test_replies_parse_whole_and_never_from_a_partial_buffer(wire, value):
    assert parse(bytearray(wire), 0) == (value, len(wire))
    for cut in range(1, len(wire)):
        assert not isinstance(parse(bytearray(wire[:cut]), 0), tuple), f"parsed from {wire[:cut]!r}"


def test_error_replies_become_reply_errors():
    value, _ = parse(bytearray(b"-NOSCRIPT No matching script\r\n"), 0)
    assert isinstance(value, ReplyError) and str(value).startswith("NOSCRIPT")


async def test_concurrent_calls_share_the_connection_and_get_their_own_replies(redis_url):
    client = RespClient(redis_url, timeout_s=2.0)
    try:
        key = f"resp-test-{time.time_ns()}"
        replies = await asyncio.gather(*(client.call("INCR", key) for _ in range(200)))
        assert sorted(replies) == list(range(1, 201))
        echoes = await asyncio.gather(*(client.call("ECHO", f"m{i}") for i in range(50)))
        assert echoes == [f"m{i}".encode() for i in range(50)]
        with pytest.raises(ReplyError):
            await client.call("NOSUCHCOMMAND")
        assert await client.call("DEL", key) == 1
    finally:
        await client.close()


async def test_a_silent_server_fails_every_waiting_call_within_the_timeout():
    async def accept_and_say_nothing(reader, writer):
        await asyncio.Event().wait()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RespClient(f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
    started = time.monotonic()
    try:
        results = await asyncio.gather(*(client.call("PING") for _ in range(5)), return_exceptions=True)
    finally:
        await client.close()
        server.close()
    assert all(isinstance(r, TimeoutError) for r in results)
    assert time.monotonic() - started < 1.0


async def test_a_refused_connection_fails_at_once_and_the_client_reconnects_later(redis_process):
    client = RespClient(redis_process.url, timeout_s=1.0)
    try:
        assert await client.call("PING") == b"PONG"
        redis_process.stop()
        with pytest.raises(OSError):
            await client.call("PING")
        redis_process.start()
        assert await client.call("PING") == b"PONG"
    finally:
        await client.close()
