"""Specifications of reading a client's request before it is a call: its id, its body's size and time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.config import ServerConfig
from gateway.errors import GatewayError
from gateway.request import read_body, request_id
from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess


@pytest.mark.parametrize("given", ["abc-123", "a" * 128, "req_01H:trace/span=9"])
def test_a_fit_request_id_is_kept(given: str) -> None:
    assert request_id(given) == given


@pytest.mark.parametrize("given", [None, "", "a" * 129, "two words", "tab\there", "new\nline", "naïve", "\x00"])
def test_any_other_request_id_is_replaced_by_a_new_one(given: str | None) -> None:
    made = request_id(given)
    assert made != given and len(made) == 32 and made.isalnum()


def receiving(*chunks: bytes):
    """An ASGI receive giving `chunks`, then a disconnect."""
    pending = list(chunks)

    async def receive() -> dict:
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
    return receive


async def test_a_body_is_read_whole_from_its_chunks() -> None:
    assert await read_body(receiving(b'{"a":', b' 1}'), None, ServerConfig()) == b'{"a": 1}'


async def test_a_body_past_the_limit_is_a_413_after_the_rest_was_read() -> None:
    chunks = [b"x" * 1024] * 8
    receive = receiving(*chunks)
    with pytest.raises(GatewayError) as caught:
        await read_body(receive, None, ServerConfig(max_body_bytes=2048))
    assert (caught.value.status, caught.value.code, caught.value.headers["connection"]) == (
        413, "request_too_large", "close")
    assert (await receive())["type"] == "http.disconnect"  # nothing left unread


async def test_a_client_gone_while_sending_is_a_400() -> None:
    async def receive() -> dict:
        return {"type": "http.disconnect"}
    with pytest.raises(GatewayError) as caught:
        await read_body(receive, None, ServerConfig())
    assert caught.value.status == 400


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with FakeProvider("openai") as fake:
        cfg = {"server": {"max_body_bytes": 1 << 20, "body_timeout_s": 1},
               "providers": {"p": {"kind": "openai", "base_url": fake.base_url, "api_key": fake.api_key}},
               "models": {"m": {"routes": [{"provider": "p", "model": "gpt-4o-mini"}]}}}
        with GatewayProcess(cfg) as gw:
            yield gw


def test_the_openai_sdk_reads_a_413_for_a_body_over_the_limit_instead_of_a_reset(gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0, timeout=20)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x" * (5 << 20)}])
    assert caught.value.status_code == 413 and caught.value.body["code"] == "request_too_large"


def test_a_body_that_trickles_past_its_deadline_is_answered_408(gateway: GatewayProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    sock.settimeout(5)
    started = time.monotonic()
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    assert 0.9 <= time.monotonic() - started < 3


def test_the_request_id_echoed_is_the_clients_only_when_it_is_fit(gateway: GatewayProcess) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    fit = httpx.post(gateway.base_url + "/chat/completions", json=body, headers={"x-request-id": "trace-42"})
    unfit = httpx.post(gateway.base_url + "/chat/completions", json=body, headers={"x-request-id": "x" * 500})
    assert fit.headers["x-request-id"] == "trace-42"
    assert len(unfit.headers["x-request-id"]) == 32
