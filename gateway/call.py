"""A client's request, read once from its body and checked against OpenAI's schema.

A `Call` is what every later step of the request path works from; the body is parsed
here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config import PartTokens
from gateway.errors import bad_request

ENDPOINTS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings",
             "rerank": "/rerank"}
SCORING = frozenset({"embeddings", "rerank"})  # endpoints that read a prompt and generate nothing
MAX_DOCUMENTS = 10_000  # a rerank request's documents; more is no search result page
LEGACY_COMPLETIONS_MAX_TOKENS = 16
MAX_OUTPUT_TOKENS = 1_000_000  # server.max_output_tokens's default
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MESSAGE_OVERHEAD_TOKENS = 8  # role markers and template tokens around each message
_PROMPT_OVERHEAD_TOKENS = 8  # the template's own: a begin-of-text token, the assistant's header
# Content parts whose tokens are not their bytes: counted per part at the route's own bound
# (config: part_tokens), since an image's or a file's count depends on the model.
MEDIA_PARTS = {"image_url": "image", "input_image": "image", "input_audio": "audio", "file": "file",
               "input_file": "file"}

_NUMBER = (int, float)
_JSON_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string", dict: "object", list: "array",
               type(None): "null"}
# Field -> accepted Python types, for the fields whose type a provider would otherwise reject late.
_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": _NUMBER, "top_p": _NUMBER, "presence_penalty": _NUMBER, "frequency_penalty": _NUMBER,
    "repetition_penalty": _NUMBER, "min_p": _NUMBER, "top_k": (int,), "seed": (int,), "n": (int,),
    "max_tokens": (int,), "max_completion_tokens": (int,), "stream": (bool,), "user": (str,),
    "logit_bias": (dict,), "stream_options": (dict,), "tools": (list,), "response_format": (dict,),
    "best_of": (int,), "echo": (bool,), "suffix": (str,), "dimensions": (int,), "encoding_format": (str,),
    "functions": (list,), "modalities": (list,), "top_logprobs": (int,), "query": (str,), "documents": (list,),
    "top_n": (int,), "return_documents": (bool,),
}


@dataclass(slots=True)
class Call:
    endpoint: str  # "chat" | "completions" | "embeddings"
    body: dict[str, Any]
    model: str
    stream: bool
    wants_usage: bool  # the client asked for a usage chunk at the end of its stream
    max_tokens: int | None  # what the client allowed, under either name
    n: int
    prompt_tokens_bound: int  # never fewer than the tokens the prompt's text will really count
    narrowing: dict[str, Any] | None  # the body's `gateway: {...}` field, if any
    media: dict[str, int] | None = None  # image, audio and file parts by kind, bounded per route
    # The features (qualified, as "chat.tools") only some routes honour; the router keeps to those.
    needs: frozenset[str] = frozenset()
    wants_base64: bool = False  # embeddings as base64, which the gateway encodes where a route cannot
    # max_tokens sent to a route whose context window is unknown, when the client named none (admission).
    blind_max_tokens: int | None = None
    # A Responses API request (`body` is then its chat translation): a gateway.responses.request.
    # ResponsesCall, what a native route is sent and what the answer is built and stored from. Not
    # typed here, as that package builds on this module.
    responses: Any = None

    @property
    def generates(self) -> bool:
        """Whether the answer has output tokens (not embeddings, not rerank scores)."""
        return self.endpoint not in SCORING

    @property
    def api(self) -> str:
        """The endpoint the client called: "responses" for a Responses request, else `endpoint`."""
        return "responses" if self.responses is not None else self.endpoint

    def prompt_bound(self, part_tokens: PartTokens) -> int:
        """Tokens the whole prompt counts at most, each media part at `part_tokens` of its kind."""
        if not self.media:
            return self.prompt_tokens_bound
        return self.prompt_tokens_bound + sum(count * getattr(part_tokens, kind) for kind, count in self.media.items())

    @property
    def path(self) -> str:
        return ENDPOINTS[self.endpoint]


def read_call(raw: bytes, endpoint: str, max_output_tokens: int = MAX_OUTPUT_TOKENS) -> Call:
    """Parse and check a request body; raise a 400 GatewayError naming the bad field."""
    if not raw:
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return checked_call(body, endpoint, max_output_tokens)


def checked_call(body: dict[str, Any], endpoint: str, max_output_tokens: int = MAX_OUTPUT_TOKENS) -> Call:
    """A parsed body checked against its endpoint's schema; a 400 GatewayError naming the bad field."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", param="model", code="missing_required_parameter")
    _check_types(body)
    media: dict[str, int] = {}
    prompt_bound = _PROMPT_READERS[endpoint](body, media)
    stream = bool(body.get("stream", False))
    if stream and endpoint in SCORING:
        raise bad_request(f"/{endpoint} does not stream; leave 'stream' out", param="stream", code="invalid_value")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise bad_request("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                          param="stream_options")
    max_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(max_name)
    if max_tokens is not None and not 1 <= max_tokens <= max_output_tokens:
        raise bad_request(f"{max_name} must be between 1 and {max_output_tokens}, got {max_tokens}",
                          param=max_name, code="invalid_value")
    if max_tokens is None and endpoint == "completions":
        max_tokens = LEGACY_COMPLETIONS_MAX_TOKENS
    n = 1 if body.get("n") is None else body["n"]
    if not 1 <= n <= 128:
        raise bad_request(f"n must be between 1 and 128, got {n}", param="n")
    _check_stop(body.get("stop"))
    if endpoint == "embeddings":
        _check_embedding_options(body)
    if endpoint == "rerank" and body.get("top_n") is not None and body["top_n"] < 1:
        raise bad_request(f"top_n must be 1 or more, got {body['top_n']}", param="top_n", code="invalid_value")
    narrowing = body.get("gateway")
    if narrowing is not None and not isinstance(narrowing, dict):
        raise bad_request("'gateway' must be an object such as {\"providers\": [\"pool\"]}", param="gateway")
    return Call(endpoint=endpoint, body=body, model=model, stream=stream,
                wants_usage=bool(stream and options and options.get("include_usage")),
                max_tokens=max_tokens, n=n, prompt_tokens_bound=prompt_bound, narrowing=narrowing,
                media=media or None, needs=_NEEDS[endpoint](body, media, stream, n),
                wants_base64=endpoint == "embeddings" and body.get("encoding_format") == "base64")


def _check_types(body: dict[str, Any]) -> None:
    for name, types in _TYPES.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            wanted = "number" if types == _NUMBER else " or ".join(_JSON_NAMES[t] for t in types)
            got = _JSON_NAMES.get(type(value), "value")
            raise bad_request(f"Invalid type for '{name}': expected {wanted}, got {got}.", param=name,
                              code="invalid_type")


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad_request("'stop' must be a string or an array of strings", param="stop", code="invalid_type")


def _check_embedding_options(body: dict[str, Any]) -> None:
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise bad_request(f"encoding_format must be 'float' or 'base64', got {encoding[:40]!r}",
                          param="encoding_format", code="invalid_value")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions < 1:
        raise bad_request(f"dimensions must be 1 or more, got {dimensions}", param="dimensions", code="invalid_value")


def _chat_prompt(body: dict[str, Any], media: dict[str, int]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages",
                          code="missing_required_parameter" if messages is None else "invalid_type")
    total = _PROMPT_OVERHEAD_TOKENS
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages[{i}] must be an object with a string 'role'", param=f"messages[{i}]")
        if message["role"] not in ROLES:
            raise bad_request(f"messages[{i}].role is {message['role'][:40]!r}; it must be one of "
                              f"{', '.join(sorted(ROLES))}", param=f"messages[{i}].role", code="invalid_value")
        total += _MESSAGE_OVERHEAD_TOKENS + _content_bound(message.get("content"), f"messages[{i}].content", media)
        for field in ("name", "tool_call_id"):
            if isinstance(message.get(field), str):
                total += len(message[field].encode())
        for field in ("tool_calls", "function_call"):
            if message.get(field):
                total += len(orjson.dumps(message[field]))
    for field in ("tools", "functions"):
        if body.get(field):
            total += len(orjson.dumps(body[field]))
    return total


def _completions_prompt(body: dict[str, Any], media: dict[str, int]) -> int:
    prompt = body.get("prompt")
    if prompt is None:
        raise bad_request("you must provide a prompt parameter", param="prompt", code="missing_required_parameter")
    return _input_bound(prompt, "prompt")


def _embeddings_input(body: dict[str, Any], media: dict[str, int]) -> int:
    value = body.get("input")
    if value is None or value == [] or value == "":
        raise bad_request("you must provide an input parameter", param="input", code="missing_required_parameter")
    return _input_bound(value, "input")


def _rerank_pairs(body: dict[str, Any], media: dict[str, int]) -> int:
    """A cross-encoder reads the query beside each document: the query's bytes once per document."""
    query, documents = body.get("query"), body.get("documents")
    if not isinstance(query, str) or not query:
        raise bad_request("you must provide a query", param="query", code="missing_required_parameter")
    if not isinstance(documents, list) or not documents:
        raise bad_request("'documents' must be a non-empty array of strings", param="documents",
                          code="missing_required_parameter" if documents is None else "invalid_type")
    if len(documents) > MAX_DOCUMENTS:
        raise bad_request(f"'documents' holds {len(documents)}; at most {MAX_DOCUMENTS}", param="documents",
                          code="array_above_max_length")
    total = 0
    for i, document in enumerate(documents):
        text = document.get("text") if isinstance(document, dict) else document
        if not isinstance(text, str):
            raise bad_request(f"documents[{i}] must be a string or {{\"text\": ...}}", param=f"documents[{i}]",
                              code="invalid_type")
        total += _text_bound(query) + _text_bound(text)
    return total


def _input_bound(value: Any, param: str) -> int:
    """A prompt may be a string, strings, a token list, or token lists (OpenAI's four forms)."""
    if isinstance(value, str):
        return _text_bound(value)
    if isinstance(value, list):
        if all(_is_token(v) for v in value):
            return len(value)
        if all(isinstance(v, str) for v in value):
            return sum(_text_bound(v) for v in value)
        if all(isinstance(v, list) and all(_is_token(t) for t in v) for v in value):
            return sum(len(v) for v in value)
    raise bad_request(f"'{param}' must be a string, an array of strings, or an array of tokens",
                      param=param, code="invalid_type")


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_bound(text: str) -> int:
    # A byte-level tokenizer never makes more tokens than bytes, so bytes bound the count.
    return len(text.encode())


def _content_bound(content: Any, param: str, media: dict[str, int]) -> int:
    """A message's content: a string, null, or content parts (text parts by their bytes,
    media parts counted in `media`, any other part by the size of its JSON)."""
    if content is None:
        return 0
    if isinstance(content, str):
        return _text_bound(content)
    if not isinstance(content, list):
        raise bad_request(f"{param} must be a string or an array of content parts", param=param, code="invalid_type")
    total = 0
    for part in content:
        if not isinstance(part, dict):
            raise bad_request(f"{param} must hold content part objects", param=param, code="invalid_type")
        kind = MEDIA_PARTS.get(part.get("type"))  # type: ignore[arg-type]
        if kind is not None:
            media[kind] = media.get(kind, 0) + 1
        elif isinstance(part.get("text"), str) and len(part) <= 2:
            total += _text_bound(part["text"])
        elif isinstance(part.get("refusal"), str) and len(part) <= 2:
            total += _text_bound(part["refusal"])
        else:
            total += len(orjson.dumps(part))
    return total


def _chat_needs(body: dict[str, Any], media: dict[str, int], stream: bool, n: int) -> frozenset[str]:
    needs = [f"chat.{_MEDIA_FEATURES[kind]}" for kind in media]
    if body.get("tools") or body.get("functions"):
        needs.append("chat.tools")
        if stream:
            needs.append("chat.tool_streaming")
    answer_format = body.get("response_format")
    if answer_format and answer_format.get("type") in ("json_object", "json_schema"):
        needs.append(f"chat.{answer_format['type']}")
    if body.get("logprobs") is True:
        needs.append("chat.logprobs")
    if n > 1:
        needs.append("chat.n")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        needs.append("chat.audio_output")
    if body.get("web_search_options") is not None:
        needs.append("chat.web_search")
    if any(body.get(name) is not None for name in _GUIDED):
        needs.append("chat.structured_outputs")
    return frozenset(needs)


def _completions_needs(body: dict[str, Any], media: dict[str, int], stream: bool, n: int) -> frozenset[str]:
    needs = []
    if body.get("logprobs") is not None:
        needs.append("completions.logprobs")
    if n > 1:
        needs.append("completions.n")
    if body.get("echo") is True:
        needs.append("completions.echo")
    if body.get("suffix"):
        needs.append("completions.suffix")
    return frozenset(needs)


def _embeddings_needs(body: dict[str, Any], media: dict[str, int], stream: bool, n: int) -> frozenset[str]:
    return frozenset(("embeddings.dimensions",)) if body.get("dimensions") is not None else frozenset()


_MEDIA_FEATURES = {"image": "vision", "audio": "audio", "file": "files"}
_GUIDED = ("structured_outputs", "guided_json", "guided_regex", "guided_choice", "guided_grammar")
_NEEDS = {"chat": _chat_needs, "completions": _completions_needs, "embeddings": _embeddings_needs,
          "rerank": lambda *_: frozenset()}
_PROMPT_READERS = {"chat": _chat_prompt, "completions": _completions_prompt, "embeddings": _embeddings_input,
                   "rerank": _rerank_pairs}
