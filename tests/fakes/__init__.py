"""Fake upstream LLM providers served over real HTTP on loopback, for the gateway's tests."""

from .provider import FakeProvider
from .records import Bill, ReceivedRequest

__all__ = ["Bill", "FakeProvider", "ReceivedRequest"]
