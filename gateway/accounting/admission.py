"""Admission: reserve a request's worst case against its team's limits, in one store call.

The worst case is the prompt's token bound plus every token the request may generate,
priced at the dearest route of its model; settlement later replaces it with what was used.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

from gateway.accounting.outbox import Outbox
from gateway.accounting.periods import utc_periods
from gateway.call import Call
from gateway.config import Config, ModelConfig, PartTokens, TeamConfig
from gateway.errors import GatewayError
from gateway.ids import new_id
from gateway.money import token_cost
from gateway.store import Admission, Hold, Store, StoreUnavailable

log = logging.getLogger("gateway.admission")


@dataclass(frozen=True, slots=True)
class Reservation:
    """What admission gave a request: its hold in the store, and the id its settlement goes under."""

    id: str  # the reservation's id; for one admitted unmetered (store down), an id the store never saw
    hold: Hold
    headers: dict[str, str]
    metered: bool = True


def worst_case(call: Call, model: ModelConfig, team: TeamConfig, part_tokens: PartTokens) -> tuple[int, int]:
    """(tokens, cost in nano-dollars) the request can use at most, on any of its routes."""
    output = 0 if call.endpoint == "embeddings" else (call.max_tokens or team.max_tokens_default) * call.n
    tokens = cost = 0
    for route in model.routes:
        prompt = call.prompt_bound(route.part_tokens or part_tokens)
        tokens = max(tokens, prompt + output)
        if route.price is not None:
            cost = max(cost, token_cost(prompt, route.price.input_per_mtok_nano)
                       + token_cost(output, route.price.output_per_mtok_nano))
    return tokens, cost


class Admitter:
    def __init__(self, config: Config, store: Store, outbox: Outbox) -> None:
        self._store = store
        self._outbox = outbox
        self._allow_when_down = config.store.on_failure == "allow"
        self._ttl_s = config.store.reservation_ttl_s
        self._part_tokens = config.routing.part_tokens

    async def admit(self, call: Call, model: ModelConfig, team: TeamConfig) -> Reservation:
        if call.max_tokens is None and call.endpoint != "embeddings":
            # A cap the upstream will honour, so the reservation is a true upper bound.
            call.max_tokens = team.max_tokens_default
        tokens, cost = worst_case(call, model, team, self._part_tokens)
        day, month = utc_periods()
        hold = Hold(team=team.name, tokens=tokens, cost_nano=cost, day=day, month=month, ttl_s=self._ttl_s)
        try:
            admission = await self._store.admit(hold, team.limits)
        except StoreUnavailable:
            # The call may still run on the store (it was queued there): whatever it holds is released.
            self._outbox.release(team.name, hold.reservation_id, self._ttl_s)
            if self._allow_when_down:
                log.warning("store unavailable: admitting unmetered (store.on_failure: allow)")
                return Reservation(new_id(), hold, {}, metered=False)
            raise GatewayError(503, "The gateway cannot check quotas right now (store unavailable); "
                               "retry shortly.", type="service_unavailable", code="store_unavailable",
                               headers={"retry-after": "1"}) from None
        except asyncio.CancelledError:  # the client left while the store decided: nobody will settle it
            self._outbox.release(team.name, hold.reservation_id, self._ttl_s)
            raise
        headers = rate_limit_headers(admission, team)
        if not admission.admitted:
            raise refusal(admission, headers)
        return Reservation(hold.reservation_id, hold, headers)


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
        period = "daily" if reason.startswith("budget_day") else "monthly"
        if reason.endswith("_held"):
            return GatewayError(429, f"Your team's {period} budget is taken up by requests in flight; they "
                                f"settle in moments, usually for less than they hold. Please try again in "
                                f"{retry}s.", type="requests", code="budget_held_by_requests_in_flight",
                                headers=headers)
        unit = "day" if period == "daily" else "month"
        return GatewayError(429, f"You exceeded your team's {period} budget. It resets at the start of the "
                            f"next UTC {unit}.", type="insufficient_quota", code="insufficient_quota",
                            headers=headers)
    if reason == "released":  # only a call the gateway already gave up on can see this
        return GatewayError(503, "The gateway cannot check quotas right now; retry shortly.",
                            type="service_unavailable", code="store_unavailable", headers={"retry-after": "1"})
    unit = "requests" if reason == "rpm" else "tokens"
    return GatewayError(429, f"Rate limit reached for {unit} per minute ({reason}). Please try again in "
                        f"{retry}s.", type="requests" if unit == "requests" else "tokens",
                        code="rate_limit_exceeded", headers=headers)
