"""Specifications of what never leaves the gateway: keys, tokens, internal addresses, credentials."""

from __future__ import annotations

import pytest

from gateway.errors import upstream_error
from gateway.redact import masked, scrub, without_credentials


@pytest.mark.parametrize("secret", [
    "sk-proj-abcdefghijklmnop", "sk-gw-Zm9vYmFyYmF6cXV4", "Bearer eyJhbGciOi.payload.sig", "api_key=abc123",
    "token: s3cr3t", "password=hunter2", "http://10.1.2.3:8000/v1/chat/completions", "10.1.2.3:8000",
    "https://api.provider.example/v1?key=abc",
])
def test_scrub_removes_what_looks_like_a_secret_or_an_address(secret: str) -> None:
    assert secret not in scrub(f"upstream said: {secret} (retry later)")
    assert scrub(f"upstream said: {secret} (retry later)").startswith("upstream said: [redacted]")


def test_scrub_removes_the_upstreams_own_host_and_leaves_plain_words() -> None:
    text = scrub("model busy on gpu-7.internal:8000, try again", hosts=("gpu-7.internal",))
    assert text == "model busy on [redacted], try again"
    assert scrub("max_tokens must be at most 4096") == "max_tokens must be at most 4096"


def test_an_upstream_error_reaches_the_client_bounded_and_scrubbed() -> None:
    body = (b'{"error":{"message":"Incorrect API key provided: sk-live-0123456789. Upstream 10.0.0.9:443 '
            b'refused.' + b"x" * 10_000 + b'","param":"sk-live-0123456789","code":"invalid_api_key"}}')
    error = upstream_error(400, body, "openai", hosts=("api.openai.com",))
    assert "sk-live" not in error.message and "10.0.0.9" not in error.message and len(error.message) <= 2_000
    assert error.param == "[redacted]"


def test_urls_are_shown_without_credentials_and_masked_in_errors() -> None:
    assert without_credentials("https://u:p@h.example:8443/v1?key=1#f") == "https://h.example:8443/v1"
    assert masked("redis://u:p@h:6379/0?password=x&db=1") == "redis://u:[redacted]@h:6379/0?password=[redacted]&db=1"
    assert masked("redis://:onlypassword@h:6379") == "redis://:[redacted]@h:6379"
