"""The settings of a `mock` provider: how fast it answers, how long, and how often it fails.

They are written flat in the provider's entry; `gateway.config.providers` gathers them here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import field_validator

from gateway.config.fields import Number, Seconds, Section, Whole, in_range, problem

ERROR_STATUSES = (429, 500, 502, 503)


class MockLatency(Section):
    first_token_s: Annotated[Seconds, in_range(0, 600)] = 0.0  # before the first token (or the whole answer)
    per_token_s: Annotated[Seconds, in_range(0, 60)] = 0.0  # between two tokens


class MockConfig(Section):
    latency: MockLatency = MockLatency()
    # The share of requests answered with an error (one of error_statuses, at random), so fallback can be tried.
    error_rate: Annotated[Number, in_range(0, 1)] = 0.0
    error_statuses: tuple[Whole, ...] = (500, 503, 429)
    answer_tokens: Annotated[Whole, in_range(1, 1_000_000)] = 16  # an answer's length unless max_tokens cuts it
    embedding_dimensions: Annotated[Whole, in_range(1, 65_536)] = 16  # unless the request names `dimensions`

    @field_validator("error_statuses")
    @classmethod
    def _known_statuses(cls, statuses: tuple[int, ...]) -> tuple[int, ...]:
        if not statuses:
            raise problem(f"empty; list one or more of {', '.join(map(str, ERROR_STATUSES))}")
        for i, status in enumerate(statuses):
            if status not in ERROR_STATUSES:
                raise problem(f"{status} is not one of {', '.join(map(str, ERROR_STATUSES))}", at=f"[{i}]")
        return statuses
