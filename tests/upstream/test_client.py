"""Specifications of the upstream client: what an upstream's answer becomes before it reaches the
request path, whatever the upstream sends."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import orjson
import pytest
from aiohttp import web

from gateway.config import UpstreamConfig, parse_config
from gateway.errors import GatewayError
from gateway.upstream.client import UpstreamClient, request_headers
from tests.fakes.server import BackgroundServer

ANSWER = {"id": "c1", "object": "chat.completion", "choices": [{"message": {"content": "hi"}}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


def make_app() -> web.Application:
    async def json_answer(request: web.Request) -> web.Response:
        return web.json_response(ANSWER)

    async def gzipped(request: web.Request) -> web.Response:
        assert "gzip" in request.headers["accept-encoding"]
        return web.Response(body=gzip.compress(orjson.dumps(ANSWER)), headers={
            "content-encoding": "gzip", "content-type": "application/json"})

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>oops</html>", content_type="text/html")

    async def big_error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="E" * (4 << 20) + " key sk-live-abcdefghijkl at 10.0.0.7:8000")

    async def secret_error(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "bad key sk-live-abcdefghijkl for http://10.0.0.7:8000/v1"}},
                                 status=401)

    async def stream(request: web.Request) -> web.StreamResponse:
        assert request.headers["accept-encoding"] == "identity"
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices":[]}\n\n')
        return response

    async def json_as_stream(request: web.Request) -> web.Response:
        return web.json_response({"error": "stream not supported"})

    async def gzip_stream(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"data: {}\n\n"), headers={"content-encoding": "gzip"})

    async def cookie(request: web.Request) -> web.Response:
        # An upstream that sets a cookie, and says which request headers it was sent.
        response = web.json_response({"cookie": request.headers.get("cookie"),
                                      "user_agent": request.headers.get("user-agent")})
        response.set_cookie("session", "team-a-secret")
        return response

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"location": "http://10.0.0.7:8000/v1/chat/completions"})

    app = web.Application()
    for path, handler in {"/cookie": cookie, "/moved": moved, "/json": json_answer, "/gzip": gzipped, "/html": html, "/big-error": big_error,
                          "/secret-error": secret_error, "/stream": stream, "/json-stream": json_as_stream,
                          "/gzip-stream": gzip_stream}.items():
        app.router.add_post(path, handler)
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    background = BackgroundServer(make_app, name="odd-upstream")
    port = background.start()
    yield f"http://127.0.0.1:{port}"
    background.stop()


PROVIDER = parse_config({"providers": {"p": {"kind": "openai", "api_key": "k"}}}, {}).providers["p"]


async def opened(url: str, stream: bool = False, limits: UpstreamConfig | None = None):
    client = UpstreamClient(limits)
    await client.start({"p": PROVIDER})
    try:
        result = await client.open(PROVIDER, url, b"{}", stream=stream, request_id="r-1")
        result.response.close()
        return result
    finally:
        await client.close()


async def failure(url: str, stream: bool = False, limits: UpstreamConfig | None = None) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await opened(url, stream, limits)
    return caught.value


async def test_a_json_answer_arrives_parsed_and_as_sent(server: str) -> None:
    answer = await opened(server + "/json")
    assert answer.doc == ANSWER and orjson.loads(answer.first) == ANSWER


async def test_a_cookie_an_upstream_sets_is_never_sent_back_with_anyones_request(server: str) -> None:
    # One session serves every team: a jar would hand one team's upstream cookie to the next request.
    # By a host name (a jar keeps no cookie of an IP address), as real providers are reached.
    url = server.replace("127.0.0.1", "localhost") + "/cookie"
    client = UpstreamClient()
    await client.start({"p": PROVIDER})
    try:
        answers = []
        for _ in range(2):
            result = await client.open(PROVIDER, url, b"{}", stream=False, request_id="r-1")
            result.response.close()
            answers.append(result.doc)
    finally:
        await client.close()
    assert [a["cookie"] for a in answers] == [None, None]
    assert answers[0]["user_agent"].startswith("llm-gateway/")  # the gateway's own, not the library's


def test_a_providers_own_header_replaces_the_gateways_whatever_its_case() -> None:
    provider = parse_config({"providers": {"p": {"kind": "openai", "api_key": "k",
                                                 "headers": {"User-Agent": "team-tool/2"}}}}, {}).providers["p"]
    headers = request_headers(provider)
    assert [(k, v) for k, v in headers.items() if k.lower() == "user-agent"] == [("User-Agent", "team-tool/2")]


async def test_a_redirect_is_not_followed_but_refused_as_retryable(server: str) -> None:
    error = await failure(server + "/moved")
    assert (error.status, error.code, error.retryable) == (502, "upstream_redirect", True)
    assert "10.0.0.7" not in error.message


async def test_a_gzipped_answer_is_inflated_by_the_gateway(server: str) -> None:
    assert (await opened(server + "/gzip")).doc == ANSWER


async def test_an_html_200_is_a_retryable_502_invalid_response(server: str) -> None:
    error = await failure(server + "/html")
    assert (error.status, error.code, error.retryable) == (502, "upstream_invalid_response", True)


async def test_an_answer_over_its_cap_is_a_502_too_large(server: str) -> None:
    assert (await opened(server + "/json", limits=UpstreamConfig(max_body_bytes=1024))).doc == ANSWER
    below_the_answer = UpstreamConfig.model_construct(max_body_bytes=16, max_error_body_bytes=1024,
                                                      max_event_bytes=1024)  # under config's own minimum
    error = await failure(server + "/json", limits=below_the_answer)
    assert (error.status, error.code) == (502, "upstream_response_too_large")


async def test_an_error_body_is_read_only_as_far_as_a_message_needs_and_scrubbed(server: str) -> None:
    error = await failure(server + "/big-error")
    assert error.status == 502 and len(error.message) < 3_000
    secret = await failure(server + "/secret-error")
    assert secret.code == "upstream_auth_failed"
    assert "sk-live" not in secret.message and "10.0.0.7" not in secret.message


async def test_a_stream_is_asked_for_uncompressed_and_must_begin_as_an_event_stream(server: str) -> None:
    assert (await opened(server + "/stream", stream=True)).first.startswith(b"data:")
    for path in ("/json-stream", "/gzip-stream"):
        error = await failure(server + path, stream=True)
        assert (error.status, error.code) == (502, "upstream_invalid_response")


async def test_a_refused_connection_says_so_without_the_upstreams_address() -> None:
    error = await failure("http://127.0.0.1:9/v1/chat/completions")
    assert (error.status, error.code, error.retryable) == (502, "upstream_unreachable", True)
    assert "127.0.0.1" not in error.message and ":9" not in error.message
