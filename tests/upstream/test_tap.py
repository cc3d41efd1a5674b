"""Specifications of the stream tap: bytes pass through untouched, usage is taken out, deltas are counted.

Every stream is fed whole and in splits of 1, 7 and 64 bytes; what the client gets and what
the tap reads must not depend on where the network cut the bytes.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson
import pytest

from gateway.accounting.usage import Usage, usage_from_doc
from gateway.upstream.tap import StreamTap
from providers import PROFILES

SPLITS = [1, 7, 64, None]  # None: the whole stream in one piece
DONE = b"data: [DONE]\n\n"

Encode = Callable[[Any], bytes]


def compact(doc: Any) -> bytes:
    return orjson.dumps(doc)


def spaced(doc: Any) -> bytes:
    """Python's json.dumps style: a space after every colon and comma."""
    return json.dumps(doc).encode()


def event(doc: Any, encode: Encode = compact) -> bytes:
    return b"data: " + encode(doc) + b"\n\n"


def pieces(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[i:i + size] for i in range(0, len(data), size)]


def tap_all(kind: str, wants_usage: bool, data: bytes, size: int | None, flush: bool = True) -> tuple[bytes, StreamTap]:
    tap = StreamTap(PROFILES[kind], wants_usage)
    out = b"".join(tap.feed(piece) for piece in pieces(data, size))
    if flush:
        out += tap.flush()
    return out, tap


def outcome(tap: StreamTap) -> tuple[Any, ...]:
    return (tap.usage, tap.deltas)


def events(data: bytes) -> list[bytes]:
    return [e + b"\n\n" for e in data.split(b"\n\n") if e]


# --- an OpenAI-style stream (OpenAI, Novita, vLLM) ----------------------------------------

def chat_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


def openai_stream(encode: Encode = compact) -> tuple[bytes, bytes]:
    """(the stream, its usage event)."""
    usage_event = event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
                         "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}},
                        encode)
    body = (event(chat_chunk({"role": "assistant", "content": ""}, usage=None), encode)
            + event(chat_chunk({"content": "Hel"}, usage=None), encode)
            + event(chat_chunk({"content": "lo"}, usage=None), encode)
            + event(chat_chunk({"content": "!"}, usage=None), encode)
            + event(chat_chunk({}, "stop", usage=None), encode))
    return body + usage_event + DONE, usage_event


@pytest.mark.parametrize("size", SPLITS)
@pytest.mark.parametrize("encode", [compact, spaced])
def test_openai_stream_passes_byte_for_byte_and_usage_is_read(size: int | None, encode: Encode) -> None:
    stream, _ = openai_stream(encode)
    out, tap = tap_all("novita", True, stream, size)
    assert out == stream
    assert tap.usage == Usage(prompt_tokens=12, completion_tokens=3, provider_cost_nano=None)
    assert tap.deltas == 3


@pytest.mark.parametrize("size", SPLITS)
@pytest.mark.parametrize("encode", [compact, spaced])
def test_openai_usage_chunk_is_dropped_when_the_client_did_not_ask(size: int | None, encode: Encode) -> None:
    stream, usage_event = openai_stream(encode)
    out, tap = tap_all("vllm", False, stream, size)
    assert out == stream.replace(usage_event, b"")
    assert tap.usage == Usage(prompt_tokens=12, completion_tokens=3, provider_cost_nano=None)
    assert tap.deltas == 3


def test_results_do_not_depend_on_how_the_stream_was_split() -> None:
    stream, _ = openai_stream()
    for wants in (True, False):
        results = []
        for size in [*SPLITS, 2, 3, 5, 13, 100]:
            out, tap = tap_all("openai", wants, stream, size)
            results.append((out, *outcome(tap)))
        assert all(result == results[-1] for result in results)


def test_nothing_is_held_back_but_an_incomplete_event() -> None:
    stream, _ = openai_stream()
    first = events(stream)[1]
    tap = StreamTap(PROFILES["openai"], True)
    assert tap.feed(first[:20]) == b""
    assert tap.feed(first[20:]) == first


def test_keep_alive_comments_pass_through() -> None:
    stream = b": keep-alive\n\n" + event(chat_chunk({"content": "a"})) + b": ping\n\n" + DONE
    for size in SPLITS:
        out, tap = tap_all("openai", False, stream, size)
        assert out == stream
        assert tap.deltas == 1


# --- a DeepInfra stream: usage and cost on the finish chunk, a "</s>" delta before it ----------

DI_USAGE = {"prompt_tokens": 15, "completion_tokens": 16, "total_tokens": 31, "estimated_cost": 2.68e-05}


def di_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "di-1", "object": "chat.completion.chunk", "created": 1700000001,
            "model": "meta-llama/Meta-Llama-3.1-8B-Instruct",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}


def deepinfra_stream(encode: Encode = compact) -> tuple[list[bytes], bytes, dict[str, Any]]:
    """(the events before the end marker, the </s> event, the finish chunk)."""
    finish = di_chunk({"role": "assistant", "content": ""}, "stop", usage=DI_USAGE)
    eos = event(di_chunk({"role": "assistant", "content": "</s>"}), encode)
    head = [event(di_chunk({"role": "assistant", "content": ""}), encode),
            event(di_chunk({"role": "assistant", "content": "Hi"}), encode),
            event(di_chunk({"role": "assistant", "content": " there"}), encode)]
    return head, eos, finish


def di_stream_bytes(encode: Encode = compact) -> bytes:
    head, eos, finish = deepinfra_stream(encode)
    return b"".join(head) + eos + event(finish, encode) + DONE


@pytest.mark.parametrize("size", SPLITS)
@pytest.mark.parametrize("encode", [compact, spaced])
def test_deepinfra_stream_is_given_openai_shape_when_the_client_wants_usage(size: int | None, encode: Encode) -> None:
    head, _eos, finish = deepinfra_stream(encode)
    out, tap = tap_all("deepinfra", True, di_stream_bytes(encode), size)

    got = events(out)
    assert got[:3] == head  # untouched, byte for byte
    assert b"</s>" not in out
    assert orjson.loads(got[3][6:]) == {**finish, "usage": None}
    assert orjson.loads(got[4][6:]) == {
        "id": "di-1", "object": "chat.completion.chunk", "created": 1700000001,
        "model": "meta-llama/Meta-Llama-3.1-8B-Instruct", "choices": [],
        "usage": {"prompt_tokens": 15, "completion_tokens": 16, "total_tokens": 31}}
    assert got[5:] == [DONE]
    assert tap.usage == Usage(prompt_tokens=15, completion_tokens=16, provider_cost_nano=26_800)
    assert tap.deltas == 2


@pytest.mark.parametrize("size", SPLITS)
@pytest.mark.parametrize("encode", [compact, spaced])
def test_deepinfra_stream_sends_no_usage_chunk_when_the_client_did_not_ask(size: int | None, encode: Encode) -> None:
    head, _eos, finish = deepinfra_stream(encode)
    out, tap = tap_all("deepinfra", False, di_stream_bytes(encode), size)

    got = events(out)
    assert got[:3] == head
    assert b"</s>" not in out
    assert len(got) == 5
    assert orjson.loads(got[3][6:]) == {**finish, "usage": None}
    assert got[4] == DONE
    assert tap.usage == Usage(prompt_tokens=15, completion_tokens=16, provider_cost_nano=26_800)
    assert tap.deltas == 2


def test_deepinfra_output_does_not_depend_on_splits_or_json_spacing() -> None:
    for wants in (True, False):
        results = []
        for encode in (compact, spaced):
            for size in [*SPLITS, 2, 3, 5, 13, 100]:
                out, tap = tap_all("deepinfra", wants, di_stream_bytes(encode), size)
                rewritten = [orjson.loads(e[6:]) if e != DONE else None for e in events(out)[3:]]
                results.append((rewritten, *outcome(tap)))
        assert all(result == results[-1] for result in results)


def test_a_eos_text_inside_real_content_is_kept() -> None:
    stream = event(di_chunk({"content": "use </s> to end"})) + DONE
    out, tap = tap_all("deepinfra", True, stream, None)
    assert out == stream
    assert tap.deltas == 1


def test_eos_is_only_dropped_for_providers_that_leak_it() -> None:
    stream = event(chat_chunk({"content": "</s>"})) + DONE
    out, tap = tap_all("vllm", True, stream, None)
    assert out == stream
    assert tap.deltas == 1


# --- counting deltas --------------------------------------------------------------------------

def test_one_delta_is_counted_per_content_bearing_event() -> None:
    stream = (event(chat_chunk({"role": "assistant", "content": ""}))
              + b"".join(event(chat_chunk({"content": word})) for word in ["a", " b", " \"c\"", "\n"])
              + event(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
              + event(chat_chunk({}, "stop")) + DONE)
    for size in SPLITS:
        assert tap_all("openai", False, stream, size)[1].deltas == 4


def test_completions_text_deltas_are_counted() -> None:
    def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
        return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}

    stream = (event(text_chunk("Once")) + event(text_chunk(" upon")) + event(text_chunk(" a time"))
              + event(text_chunk("", "length")) + DONE)
    for size in SPLITS:
        out, tap = tap_all("novita", False, stream, size)
        assert out == stream
        assert tap.deltas == 3
        assert tap.usage is None


@pytest.mark.parametrize("size", SPLITS)
def test_a_stream_cut_mid_event_still_reports_the_deltas_counted(size: int | None) -> None:
    stream, _ = openai_stream()
    cut = stream.index(b'"lo"') + 2  # inside the third event
    out, tap = tap_all("openai", True, stream[:cut], size, flush=False)
    assert out == b"".join(events(stream)[:2])
    assert tap.usage is None
    assert tap.deltas == 1


@pytest.mark.parametrize("size", SPLITS)
def test_a_deepinfra_stream_cut_before_its_finish_chunk_counts_its_deltas_without_eos(size: int | None) -> None:
    head, eos, _finish = deepinfra_stream()
    stream = b"".join(head) + eos + b'data: {"id":"di-1","choices":[{"ind'
    out, tap = tap_all("deepinfra", False, stream, size, flush=False)
    assert out == b"".join(head)
    assert tap.usage is None
    assert tap.deltas == 2


def test_a_content_delta_reading_done_does_not_end_the_stream() -> None:
    for content in ("[DONE]", "data: [DONE]", "\n\ndata: [DONE]"):
        stream = event({"choices": [{"delta": {"content": content}}]})  # the content last, just before the end
        _, tap = tap_all("openai", False, stream, None)
        assert tap.deltas == 1 and not tap.complete
    _, tap = tap_all("openai", False, b"data: garbage ending in [DONE]\n\n", None)
    assert not tap.complete


@pytest.mark.parametrize("size", SPLITS)
def test_the_stream_is_complete_once_its_done_event_has_passed(size: int | None) -> None:
    stream, _ = openai_stream()
    for framed in (stream, stream.replace(b"\n", b"\r\n"), stream.replace(b"data: [DONE]", b"data:[DONE]")):
        tap = StreamTap(PROFILES["openai"], True)
        parts = pieces(framed, size)
        for part in parts[:-1]:
            tap.feed(part)
        assert not tap.complete or parts[-1].strip(b"\r\n") == b""
        tap.feed(parts[-1])
        assert tap.complete


def test_events_framed_with_crlf_pass_as_they_arrive_and_are_read() -> None:
    # SSE allows CRLF line ends; an upstream using them must neither be buffered to the end nor go unbilled.
    stream, _ = openai_stream()
    crlf = stream.replace(b"\n", b"\r\n")
    first = crlf[: crlf.index(b"\r\n\r\n") + 4]
    tap = StreamTap(PROFILES["openai"], True)
    assert tap.feed(first) == first
    for size in SPLITS:
        out, tap = tap_all("openai", True, crlf, size, flush=False)
        assert out == crlf
        assert tap.usage == Usage(prompt_tokens=12, completion_tokens=3, provider_cost_nano=None)
        assert tap.deltas == 3


# --- usage in a whole JSON body ---------------------------------------------------------------

def test_usage_from_a_response_body_with_provider_cost() -> None:
    doc = {"choices": [], "usage": DI_USAGE}
    assert usage_from_doc(doc, PROFILES["deepinfra"]) == Usage(15, 16, 26_800)
    assert usage_from_doc(doc, PROFILES["openai"]) == Usage(15, 16, None)


def test_no_usage_in_a_body_is_none() -> None:
    assert usage_from_doc({"choices": [], "usage": None}, PROFILES["openai"]) is None
    assert usage_from_doc([1, 2], PROFILES["openai"]) is None
