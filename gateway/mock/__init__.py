"""The built-in mock upstream: OpenAI-shaped answers made up from the prompt, served on loopback.

`answers` decides what it says (text, usage, chunks, errors); `server` says it over HTTP
with the configured latency. The gateway runs one per `mock` provider in each worker
(`MockServers`), and `gateway mock` runs one alone, as a fake upstream for load tests.
"""

from gateway.mock.answers import MockAnswers, Reply
from gateway.mock.server import MockServer, MockServers

__all__ = ["MockAnswers", "MockServer", "MockServers", "Reply"]
