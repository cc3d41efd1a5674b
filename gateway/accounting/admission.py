"""Admission: reserve a request's worst case against its team's limits, in one store call.

The worst case is the prompt's token bound plus every token the request may generate,
priced at the dearest route of its model; settlement later replaces it with what was used.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from gateway.accounting.periods import utc_periods
from gateway.call import Call
from gateway.config import Config, ModelConfig, TeamConfig
from gateway.errors import GatewayError
from gateway.money import token_cost
from gateway.store import Admission, Hold, Store, StoreUnavailable

log = logging.getLogger("gateway.admission")


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str | None  # None when admitted unmetered while the store was down
    hold: Hold
    headers: dict[str, str]


def worst_case(call: Call, model: ModelConfig, team: TeamConfig) -> tuple[int, int]:
    """(tokens, cost in nano-dollars) the request can use at most, on any of its routes."""
    output = 0 if call.endpoint == "embeddings" else (call.max_tokens or team.max_tokens_default) * call.n
    cost = 0
    for route in model.routes:
        if route.price is not None:
            cost = max(cost, token_cost(call.prompt_tokens_bound, route.price.input_per_mtok_nano)
                       + token_cost(output, route.price.output_per_mtok_nano))
    return call.prompt_tokens_bound + output, cost


class Admitter:
    def __init__(self, config: Config, store: Store) -> None:
        self._store = store
        self._allow_when_down = config.store.on_failure == "allow"
        self._ttl_s = config.store.reservation_ttl_s

    async def admit(self, call: Call, model: ModelConfig, team: TeamConfig) -> Reservation:
        if call.max_tokens is None and call.endpoint != "embeddings":
            # A cap the upstream will honour, so the reservation is a true upper bound.
            call.max_tokens = team.max_tokens_default
        tokens, cost = worst_case(call, model, team)
        day, month = utc_periods()
        hold = Hold(team=team.name, tokens=tokens, cost_nano=cost, day=day, month=month, ttl_s=self._ttl_s)
        try:
            admission = await self._store.admit(hold, team.limits)
        except StoreUnavailable:
            if self._allow_when_down:
                log.warning("store unavailable: admitting unmetered (store.on_failure: allow)")
                return Reservation(None, hold, {})
            raise GatewayError(503, "The gateway cannot check quotas right now (store unavailable); "
                               "retry shortly.", type="service_unavailable", code="store_unavailable",
                               headers={"retry-after": "1"}) from None
        headers = rate_limit_headers(admission, team)
        if not admission.admitted:
            raise refusal(admission, headers)
        return Reservation(admission.reservation_id, hold, headers)


def rate_limit_headers(admission: Admission, team: TeamConfig) -> dict[str, str]:
    """The x-ratelimit-* headers OpenAI sends, for the limits the team has."""
    headers = {}
    limits = team.limits
    if limits.rpm is not None and admission.requests_remaining is not None:
        headers["x-ratelimit-limit-requests"] = str(limits.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(admission.requests_remaining, 0))
        headers["x-ratelimit-reset-requests"] = f"{admission.requests_reset_s:.3f}s"
    if limits.tpm is not None and admission.tokens_remaining is not None:
        headers["x-ratelimit-limit-tokens"] = str(limits.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(admission.tokens_remaining, 0))
        headers["x-ratelimit-reset-tokens"] = f"{admission.tokens_reset_s:.3f}s"
    return headers


def refusal(admission: Admission, headers: dict[str, str]) -> GatewayError:
    retry = str(max(1, math.ceil(admission.retry_after_s)))
    headers = {**headers, "retry-after": retry}
    reason = admission.refused_by or "quota"
    if reason.startswith("budget"):
        period = reason.removeprefix("budget_")
        return GatewayError(429, f"You exceeded your team's {period}ly budget. It resets at the start of the "
                            f"next UTC {period}.", type="insufficient_quota", code="insufficient_quota",
                            headers=headers)
    unit = "requests" if reason == "rpm" else "tokens"
    return GatewayError(429, f"Rate limit reached for {unit} per minute ({reason}). Please try again in "
                        f"{retry}s.", type="requests" if unit == "requests" else "tokens",
                        code="rate_limit_exceeded", headers=headers)
