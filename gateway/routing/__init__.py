"""Routing: which of a model's routes a request tries, in which order, from signals kept in memory.

`router` ranks and learns from each attempt; `route` holds the per-route and per-endpoint
state; `health` is the circuit breaker and the latency averages; `signals` polls
/metrics, /health and /v1/models in the background.
"""

from gateway.routing.route import Endpoint, Route
from gateway.routing.router import Candidate, Router
from gateway.routing.signals import Signals

__all__ = ["Candidate", "Endpoint", "Route", "Router", "Signals"]
