"""The built-in mock: an upstream the gateway runs itself, on loopback, for a first run and load tests.

It speaks OpenAI's wire format and takes every parameter OpenAI takes; its answers are made
up (gateway.mock), but everything between the client and it is the real request path. Its
base URL is its own server's, known once that server listens, so none is written in config.
"""

from providers.openai import PROFILE as OPENAI
from providers.profile import Profile

KIND = "mock"
PLACEHOLDER_URL = "http://127.0.0.1:0/v1"  # replaced by the listening server's address at start

PROFILE = Profile(
    kind=KIND,
    base_url=PLACEHOLDER_URL,
    params=OPENAI.params,
    features={"chat": frozenset({"n"}), "completions": frozenset({"n"}), "embeddings": frozenset({"dimensions"})},
    forwards_unknown=True,
    lists_models=False,
    needs_api_key=False,
)
