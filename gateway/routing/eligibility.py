"""Which of a model's routes may take a request at all, before any is ranked.

Three filters, each a 400 naming why when it leaves nothing: the client's own narrowing
(`x-gateway-route`, the body's `gateway` field), the features the request needs (a route
that would drop `tools` answers something else), and the context window it must fit.
"""

from __future__ import annotations

from typing import Any

from gateway.call import Call
from gateway.errors import GatewayError
from gateway.money import nano_to_usd, usd_to_nano
from gateway.routing.route import Route
from providers.features import FEATURES

BYTES_PER_TOKEN = 4  # a prompt's byte count over this estimates its tokens
NARROWING_FIELDS = frozenset({"providers", "max_price_per_mtok"})


def eligible(model: str, routes: list[Route], call: Call, route_header: str | None) -> list[Route]:
    """The routes that may serve `call`; a 400 GatewayError saying why when none may."""
    narrowed = call.narrowing is not None or bool(route_header)
    if narrowed:
        routes = _narrow(model, routes, call.narrowing, route_header)
    if call.needs:
        routes = _capable(model, routes, call, narrowed)
    windows = [route.window() for route in routes]
    if any(window is not None for window in windows):
        routes = _fitting(model, routes, call, windows)
    return routes


def _capable(model: str, routes: list[Route], call: Call, narrowed: bool) -> list[Route]:
    kept = [route for route in routes if call.needs <= route.features]
    if kept:
        return kept
    lacking = [call.needs - route.features for route in routes]
    # Name what no route has; when each lacks something else, the first of those.
    named = min(frozenset.intersection(*lacking) or frozenset().union(*lacking), key=_position)
    endpoint, _, name = named.partition(".")
    param, what = FEATURES[endpoint][name]
    why = "; ".join(f"{route.name} does not support {', '.join(_names(missing))}"
                    for route, missing in zip(routes, lacking))
    scope = "the routes the request narrowed to" if narrowed else f"model '{model}'"
    raise GatewayError(400, f"No route of {scope} supports {what}, which this request uses ('{param}'): {why}. "
                       "A provider or route that does support it can declare it in config (capabilities).",
                       param=param, code="unsupported_parameter")


def _names(features: frozenset[str]) -> list[str]:
    return [name.partition(".")[2] for name in sorted(features, key=_position)]


def _position(qualified: str) -> tuple[int, int]:
    """Where a feature is listed: a feature before its variants (tools before tool_streaming)."""
    endpoint, _, name = qualified.partition(".")
    return list(FEATURES).index(endpoint), list(FEATURES[endpoint]).index(name)


def _fitting(model: str, routes: list[Route], call: Call, windows: list[int | None]) -> list[Route]:
    """The routes whose context window the request can fit, by its prompt's estimate (bytes / 4)
    and its max_tokens; a 400 when none is left."""
    output = call.max_tokens or 1 if call.generates else 0
    prompt = -(-call.prompt_tokens_bound // BYTES_PER_TOKEN)

    def needs(route: Route) -> int:
        return prompt + call.prompt_bound(route.part_tokens) - call.prompt_tokens_bound + output

    kept = [r for r, window in zip(routes, windows) if window is None or needs(r) <= window]
    if kept:
        return kept
    widest_window, widest = max(zip(windows, routes), key=lambda pair: pair[0] or 0)
    param = "max_tokens" if output > (widest_window or 0) else "messages"
    raise GatewayError(400, f"This model's maximum context length is {widest_window} tokens; this request "
                       f"needs about {needs(widest)} ({needs(widest) - output} in the prompt, {output} to generate). "
                       "Shorten the messages or lower max_tokens.", param=param, code="context_length_exceeded")



def _narrow(model: str, routes: list[Route], body_field: dict[str, Any] | None,
            header: str | None) -> list[Route]:
    """The routes a client's `x-gateway-route` header and `gateway` body field leave; never more."""
    allowed: set[str] | None = None
    if header:
        allowed = {part.strip() for part in header.split(",") if part.strip()}
    max_price: int | None = None
    if body_field:
        unknown = set(body_field) - NARROWING_FIELDS
        if unknown:
            raise GatewayError(400, f"unknown field 'gateway.{min(unknown)}' (known: "
                               f"{', '.join(sorted(NARROWING_FIELDS))})", param=f"gateway.{min(unknown)}")
        providers = body_field.get("providers")
        if providers is not None:
            if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers):
                raise GatewayError(400, "'gateway.providers' must be an array of provider names",
                                   param="gateway.providers")
            allowed = set(providers) if allowed is None else allowed & set(providers)
        price = body_field.get("max_price_per_mtok")
        if price is not None:
            if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
                raise GatewayError(400, "'gateway.max_price_per_mtok' must be a number of USD, 0 or more",
                                   param="gateway.max_price_per_mtok")
            max_price = usd_to_nano(price)
    kept = [r for r in routes if (allowed is None or r.name in allowed) and (
        max_price is None or r.price is None
        or max(r.price.input_per_mtok_nano, r.price.output_per_mtok_nano) <= max_price)]
    if not kept:
        known = ", ".join(r.name for r in routes)
        wanted = f"providers {sorted(allowed)}" if allowed is not None else "routes"
        if max_price is not None:
            wanted += f" at most {nano_to_usd(max_price):g} USD per million tokens"
        raise GatewayError(400, f"no route of model '{model}' matches the requested {wanted} (routes: {known})",
                           param="gateway.providers" if max_price is None else "gateway.max_price_per_mtok",
                           code="no_matching_route")
    return kept
