"""Specifications of the client side of a worker: slow and idle connections are bounded,
and a crowd of them cannot keep a real client out."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess
from tests.waiting import wait_until

PARTIAL_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"  # never finished


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as fake:
        yield fake


def config(upstream: FakeProvider, **server: object) -> dict:
    return {"server": server,
            "providers": {"p": {"kind": "openai", "base_url": upstream.base_url, "api_key": upstream.api_key}},
            "models": {"m": {"routes": [{"provider": "p", "model": "gpt-4o-mini"}]}}}


def ask(gw: GatewayProcess, **body: object) -> httpx.Response:
    return httpx.post(gw.base_url + "/chat/completions", timeout=5,
                      json={"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})


def closed_by_server(sock: socket.socket, within_s: float) -> bytes | None:
    """What the server sent before closing (b"" for nothing), or None if it kept the connection."""
    sock.settimeout(within_s)
    try:
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        return received
    except (TimeoutError, socket.timeout):
        return None
    except ConnectionResetError:
        return b""


def test_a_request_head_that_never_completes_gets_a_408_and_is_closed(upstream: FakeProvider) -> None:
    with GatewayProcess(config(upstream, header_timeout_s=0.5)) as gw:
        slow = socket.create_connection(("127.0.0.1", gw.port))
        slow.sendall(PARTIAL_HEAD)
        started = time.monotonic()
        answer = closed_by_server(slow, within_s=3)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408")
        assert 0.4 <= time.monotonic() - started < 2
        assert ask(gw).status_code == 200


def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(upstream: FakeProvider) -> None:
    with GatewayProcess(config(upstream, header_timeout_s=0.5)) as gw:
        silent = socket.create_connection(("127.0.0.1", gw.port))
        assert closed_by_server(silent, within_s=3) is not None


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(upstream: FakeProvider) -> None:
    with GatewayProcess(config(upstream, keepalive_timeout_s=0.5)) as gw:
        with httpx.Client(base_url=gw.base_url, timeout=5) as client:
            assert client.post("/chat/completions", json={"model": "m", "messages": [
                {"role": "user", "content": "hi"}]}).status_code == 200
        raw = socket.create_connection(("127.0.0.1", gw.port))
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        assert closed_by_server(raw, within_s=3) is not None  # then idle: closed


def test_a_slowloris_crowd_past_the_file_limit_does_not_keep_a_real_client_out(upstream: FakeProvider) -> None:
    # 256 files for the whole process, 400 connections that never finish their head: without a cap
    # the worker runs out of descriptors and stops accepting; with one, the oldest waiting go first.
    with GatewayProcess(config(upstream, max_connections=128, header_timeout_s=30), max_open_files=256) as gw:
        crowd = []
        for _ in range(400):
            sock = socket.create_connection(("127.0.0.1", gw.port))
            sock.sendall(PARTIAL_HEAD)
            crowd.append(sock)
        try:
            started = time.monotonic()
            assert ask(gw).status_code == 200
            assert time.monotonic() - started < 2
            assert sum(closed_by_server(s, within_s=0.01) is not None for s in crowd) >= 400 - 128
        finally:
            for sock in crowd:
                sock.close()


def test_at_the_connection_cap_a_busy_stream_is_never_the_one_closed(upstream: FakeProvider) -> None:
    upstream.completion_tokens, upstream.token_delay_s = 50, 0.02
    try:
        with GatewayProcess(config(upstream, max_connections=16, header_timeout_s=30)) as gw:
            result: dict[str, object] = {}

            def stream() -> None:
                with httpx.stream("POST", gw.base_url + "/chat/completions", timeout=10, json={
                        "model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as response:
                    result["body"] = response.read()

            reader = threading.Thread(target=stream)
            reader.start()
            wait_until(lambda: upstream.open_streams == 1, 5, "the stream under way")
            crowd = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(40)]
            reader.join(10)
            for sock in crowd:
                sock.close()
        assert result["body"].rstrip().endswith(b"data: [DONE]")  # type: ignore[union-attr]
    finally:
        upstream.completion_tokens, upstream.token_delay_s = 8, 0.0


class Recording:
    """A transport that keeps what it is asked to send, one entry per send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_what_a_connection_is_given_in_one_loop_turn_leaves_in_one_send() -> None:
    import asyncio

    from gateway.server import CorkedTransport

    wire = Recording()
    corked = CorkedTransport(wire, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    corked.write(b"{}")
    assert wire.sent == []
    await asyncio.sleep(0)  # one loop turn: the very boundary under test, not a wait for something
    assert wire.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    corked.write(b"last")
    corked.close()  # what is pending goes before the close
    assert (wire.sent[-1], wire.closed) == (b"last", True)


def test_a_whole_answer_has_its_length_and_comes_in_one_piece(upstream: FakeProvider) -> None:
    with GatewayProcess(config(upstream)) as gw:
        answer = ask(gw)
        assert answer.status_code == 200 and "transfer-encoding" not in answer.headers
        assert int(answer.headers["content-length"]) == len(answer.content) and answer.json()["choices"]
