"""The Responses API (`POST /v1/responses`) translated to Chat Completions and back.

Routes whose upstream speaks the Responses API are sent its bytes unchanged; the others
(chat-only providers) get the request translated here, and their answer translated back.

Request (request, items):
- `instructions` -> a system message first; `input` (a string, or items) -> messages:
  message items (role user, assistant, system; developer -> system) with string content
  or parts (`input_text` -> text, `input_image` with `image_url` -> image_url; assistant
  `output_text`/`refusal` parts -> the message's text); `function_call` items -> the
  assistant message's `tool_calls` (joined with the assistant text just before them);
  `function_call_output` -> a `tool` message with its `tool_call_id`.
- function `tools` (flat) -> chat's `{type: function, function: {...}}`; `tool_choice`
  auto/none/required/{type: function, name}; `parallel_tool_calls` (with tools only).
- `text.format`: json_schema -> `response_format` json_schema, json_object -> json_object,
  text -> nothing; `text.verbosity` -> `verbosity`.
- `max_output_tokens` -> `max_tokens`; temperature, top_p, user, safety_identifier,
  prompt_cache_key, service_tier as they are; `reasoning.effort` -> `reasoning_effort`
  (sent to the providers whose profile takes it, like a chat client's).
- `stream` -> `stream` with `stream_options.include_usage` always on, so usage arrives.
- `metadata`, `store`, `previous_response_id` are the gateway's: echoed, never sent;
  the caller puts a stored conversation before the input (stored.expand).
- `include`: `reasoning.encrypted_content` and `message.input_image.image_url` ask for
  nothing a translated answer has, and are accepted.

Refused with a 400 naming the parameter, and listed by `needs()` as "responses.<feature>"
so the router can keep such requests to native routes: built-in tools (web_search,
file_search, computer_use_preview, code_interpreter, image_generation, mcp, local_shell,
shell, apply_patch, custom, ...) and tool choices naming them or `allowed_tools`;
`background: true`, `conversation`, `prompt`, `truncation: auto`, `max_tool_calls`,
`top_logprobs` and the logprobs include, other `include` entries, `reasoning.summary`,
`context_management`; input `item_reference`, `reasoning` and built-in tool items,
`input_file` parts and images given by `file_id`. Unknown fields are refused too.

Answer (answer, events): the chat message -> a `message` item with one `output_text`
part (when it has text, or makes no call), then a `function_call` item per tool call;
finish_reason `length` -> status `incomplete` (reason max_output_tokens), `content_filter`
-> incomplete (content_filter); usage -> input/output tokens with cached and reasoning
details. A stream becomes the API's event sequence, ending in `response.completed`,
`response.incomplete`, or `response.failed` when the upstream broke.
Not translated back: a provider's `reasoning_content` (no reasoning item is made) and
chat `refusal` fields.
"""

from gateway.responses.answer import ResponseHead, from_completion, new_head
from gateway.responses.events import ResponseEvents
from gateway.responses.features import needs
from gateway.responses.request import ResponsesRequest, chat_body, read_request
from gateway.responses.stored import StoredResponse, expand

__all__ = ["ResponseEvents", "ResponseHead", "ResponsesRequest", "StoredResponse", "chat_body", "expand",
           "from_completion", "needs", "new_head", "read_request"]
