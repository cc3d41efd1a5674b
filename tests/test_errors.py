"""Specifications of errors as the client sees them: one OpenAI error object, whatever the upstream sent."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import GatewayError, bad_request, upstream_error

# --- the error object -----------------------------------------------------------------------

def test_error_body_is_exactly_the_openai_error_object() -> None:
    error = GatewayError(400, "bad temperature", param="temperature", code="invalid_value")
    assert error.body() == (b'{"error":{"message":"bad temperature","type":"invalid_request_error",'
                            b'"param":"temperature","code":"invalid_value"}}')


def test_error_body_keeps_null_param_and_code() -> None:
    doc = orjson.loads(GatewayError(503, "down", type="service_unavailable").body())
    assert doc == {"error": {"message": "down", "type": "service_unavailable", "param": None, "code": None}}
    assert list(doc["error"]) == ["message", "type", "param", "code"]


def test_bad_request_is_a_400_invalid_request_error() -> None:
    error = bad_request("nope", param="n", code="invalid_value")
    assert (error.status, error.type, error.param, error.code, error.retryable) == (
        400, "invalid_request_error", "n", "invalid_value", False)


def test_error_response_carries_status_json_and_headers() -> None:
    error = GatewayError(429, "slow down", type="rate_limit_error", headers={"retry-after": "3"})
    response = error.response({"x-request-id": "r1"})
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "3"
    assert response.headers["x-request-id"] == "r1"
    assert response.body == error.body()


# --- upstream bodies of every shape ---------------------------------------------------------

def test_an_openai_shaped_upstream_error_keeps_message_param_and_code() -> None:
    body = orjson.dumps({"error": {"message": "temperature must be at most 2", "type": "invalid_request_error",
                                   "param": "temperature", "code": "invalid_value"}})
    error = upstream_error(400, body, "novita")
    assert (error.status, error.message, error.type, error.param, error.code) == (
        400, "temperature must be at most 2", "invalid_request_error", "temperature", "invalid_value")
    assert error.retryable is False


def test_a_deepinfra_422_becomes_a_400_with_the_param_from_loc() -> None:
    body = orjson.dumps({"detail": [{"loc": ["body", "temperature"],
                                     "msg": "ensure this value is less than or equal to 2",
                                     "type": "value_error.number.not_le"}]})
    error = upstream_error(422, body, "deepinfra")
    assert (error.status, error.message, error.type, error.param, error.code) == (
        400, "ensure this value is less than or equal to 2", "invalid_request_error", "temperature", None)
    assert error.retryable is False


def test_a_deepinfra_422_with_a_nested_loc_joins_it_without_body() -> None:
    body = orjson.dumps({"detail": [{"loc": ["body", "messages", 0, "content"], "msg": "field required",
                                     "type": "value_error.missing"}]})
    error = upstream_error(422, body, "deepinfra")
    assert (error.status, error.param, error.message) == (400, "messages.0.content", "field required")


def test_a_flat_vllm_error_is_read() -> None:
    body = orjson.dumps({"object": "error", "message": "max_tokens must be at least 1, got 0.",
                         "type": "BadRequestError", "param": None, "code": 400})
    error = upstream_error(400, body, "pool")
    assert (error.status, error.message, error.param, error.code) == (
        400, "max_tokens must be at least 1, got 0.", None, "400")


def test_a_new_vllm_error_with_an_integer_code_is_read() -> None:
    body = orjson.dumps({"error": {"message": "The model `x` does not exist.", "type": "NotFoundError",
                                   "param": "model", "code": 404}})
    error = upstream_error(404, body, "pool")
    assert (error.status, error.message, error.param, error.code, error.type) == (
        404, "The model `x` does not exist.", "model", "404", "invalid_request_error")


def test_an_error_given_as_a_string_is_read() -> None:
    error = upstream_error(400, b'{"error": "model not found"}', "netmind")
    assert error.message == "model not found"


def test_a_plain_text_error_becomes_the_message() -> None:
    error = upstream_error(502, b"Bad Gateway\n", "netmind")
    assert (error.status, error.message, error.type) == (
        502, "provider 'netmind' answered 502: Bad Gateway", "upstream_error")


def test_an_html_error_page_is_stripped_of_tags() -> None:
    page = (b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
            b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
            b"</body>\r\n</html>\r\n")
    error = upstream_error(503, page, "deeptrin")
    assert error.status == 503
    assert error.message == ("provider 'deeptrin' answered 503: 503 Service Temporarily Unavailable "
                             "503 Service Temporarily Unavailable nginx")
    assert "<" not in error.message and ">" not in error.message


def test_an_html_page_with_a_doctype_and_leading_space_is_stripped_too() -> None:
    page = b"\n  <!DOCTYPE html><html><body><p>Gateway <b>timeout</b></p></body></html>"
    error = upstream_error(504, page, "novita")
    assert error.message == "provider 'novita' answered 504: Gateway timeout"


def test_a_long_text_error_is_cut_short() -> None:
    error = upstream_error(500, b"x" * 5000, "netmind")
    assert len(error.message) <= 400


def test_an_empty_error_body_says_so() -> None:
    error = upstream_error(500, b"", "deepinfra")
    assert (error.status, error.message) == (
        502, "provider 'deepinfra' answered 500: upstream status 500 with an empty body")


def test_a_json_body_of_unknown_shape_is_shown_as_text() -> None:
    error = upstream_error(400, b'{"oops": true}', "netmind")
    assert error.message == '{"oops": true}'


# --- statuses --------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [401, 403])
def test_a_provider_refusing_the_gateways_credentials_is_a_502(status: int) -> None:
    body = orjson.dumps({"error": {"message": "Invalid API key", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}})
    error = upstream_error(status, body, "openai")
    assert (error.status, error.type, error.code) == (502, "upstream_error", "upstream_auth_failed")
    assert error.message == "provider 'openai' rejected the gateway's credentials: Invalid API key"


@pytest.mark.parametrize("status", [401, 403])
def test_a_provider_refusing_the_gateways_credentials_lets_another_route_try(status: int) -> None:
    # The client's request is fine; another provider, with its own key, may well serve it.
    assert upstream_error(status, b"unauthorized", "openai").retryable is True


def test_a_429_keeps_retry_after_and_is_retryable() -> None:
    body = orjson.dumps({"error": {"message": "Rate limit reached", "type": "rate_limit_error",
                                   "param": None, "code": "rate_limit_exceeded"}})
    error = upstream_error(429, body, "novita", retry_after="7")
    assert (error.status, error.type, error.code) == (429, "rate_limit_error", "rate_limit_exceeded")
    assert error.message == "provider 'novita' answered 429: Rate limit reached"
    assert error.headers == {"retry-after": "7"}
    assert error.retryable is True
    assert error.response().headers["retry-after"] == "7"


def test_a_429_without_retry_after_adds_no_header() -> None:
    assert upstream_error(429, b"busy", "deepinfra").headers == {}


def test_retry_after_is_kept_only_for_a_429() -> None:
    assert upstream_error(503, b"down", "deepinfra", retry_after="5").headers == {}


@pytest.mark.parametrize(("upstream", "client"), [(500, 502), (502, 502), (503, 503), (504, 504), (408, 504),
                                                  (520, 502)])
def test_upstream_server_errors_map_to_gateway_errors_and_are_retryable(upstream: int, client: int) -> None:
    error = upstream_error(upstream, b"oops", "pool")
    assert error.status == client
    assert error.type == "upstream_error"
    assert error.retryable is True


@pytest.mark.parametrize("status", [400, 413, 422])
def test_upstream_client_errors_are_not_retryable(status: int) -> None:
    error = upstream_error(status, b'{"error": {"message": "bad"}}', "pool")
    assert error.retryable is False
    assert error.status < 500
