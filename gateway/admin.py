"""The admin API: API keys, usage reports, routing state and config reloads, behind `server.admin_key`."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re
import secrets
import time
from dataclasses import asdict
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounting.periods import utc_periods
from gateway.config import ConfigError
from gateway.errors import GatewayError, bad_request
from gateway.keys import bearer_token, hash_key, new_key
from gateway.money import nano_to_usd
from gateway.observability.request_log import UtcClock, record_fields
from gateway.service import Gateway
from gateway.store import KeyRecord, StoreUnavailable, UsageRecord

log = logging.getLogger("gateway.admin")
ADMIN_BODY_BYTES = 64 << 10
MAX_NAME_CHARS = 200
MAX_USAGE_DAYS = 400  # a report reads one hash per day
DEFAULT_SINCE = "1d"
MAX_REQUESTS_LISTED = 1_000
LOOKUP_MAX_SCANNED = 100_000  # records a lookup by id reads at most, over every team it looks in
_DURATION = re.compile(r"(\d{1,9})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


def routes() -> list[Route]:
    return [
        Route("/admin/keys", create_key, methods=["POST"]),
        Route("/admin/keys", list_keys, methods=["GET"]),
        Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/admin/usage", usage, methods=["GET"]),
        Route("/admin/requests", list_requests, methods=["GET"]),
        Route("/admin/requests/{request_id}", get_request, methods=["GET"]),
        Route("/admin/routes", route_table, methods=["GET"]),
        Route("/admin/endpoints", dedicated_endpoints, methods=["GET"]),
        Route("/admin/reload", reload_config, methods=["POST"]),
        Route("/admin/config", config_version, methods=["GET"]),
    ]


async def create_key(request: Request) -> Response:
    async def act(gw: Gateway) -> Response:
        body = await _json_body(request, ADMIN_BODY_BYTES)
        team, name = body.get("team"), body.get("name", "")
        if not isinstance(team, str) or team not in gw.config.teams:
            raise bad_request(f"'team' must name a team (known: {', '.join(sorted(gw.config.teams))})",
                              param="team")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
            raise bad_request(f"'name' must be a string of at most {MAX_NAME_CHARS} characters", param="name")
        key = new_key()
        record = KeyRecord(key_id="key_" + secrets.token_hex(8), key_hash=hash_key(key), team=team,
                           name=name, created_ms=int(time.time() * 1000))
        await gw.store.add_key(record)
        gw.keys.remember(record)
        return _json({**_public(record), "key": key}, 201)
    return await _guarded(request, act)


async def list_keys(request: Request) -> Response:
    async def act(gw: Gateway) -> Response:
        records = await gw.store.keys(request.query_params.get("team"))
        return _json({"object": "list", "data": [_public(r) for r in records]})
    return await _guarded(request, act)


async def revoke_key(request: Request) -> Response:
    async def act(gw: Gateway) -> Response:
        key_id = request.path_params["key_id"]
        if not await gw.store.revoke_key(key_id):
            raise GatewayError(404, f"no key with id {key_id!r}", param="key_id", code="key_not_found")
        return _json({"id": key_id, "revoked": True})
    return await _guarded(request, act)


async def usage(request: Request) -> Response:
    async def act(gw: Gateway) -> Response:
        team = request.query_params.get("team")
        if team not in gw.config.teams:
            raise bad_request(f"name a team with ?team= (known: {', '.join(sorted(gw.config.teams))})",
                              param="team")
        today, _ = utc_periods()
        first = _day(request.query_params.get("from") or today[:8] + "01", "from")
        last = _day(request.query_params.get("to") or today, "to")
        span = (dt.date.fromisoformat(last) - dt.date.fromisoformat(first)).days + 1
        if not 1 <= span <= MAX_USAGE_DAYS:
            raise bad_request(f"'from' to 'to' must be 1 to {MAX_USAGE_DAYS} days, in order; got {span}", param="to")
        days = await gw.store.usage(team, first, last)
        return _json(usage_report(team, first, last, days))
    return await _guarded(request, act)


async def list_requests(request: Request) -> Response:
    """The newest per-request records, of one team or all, settled since `since`."""
    async def act(gw: Gateway) -> Response:
        query = request.query_params
        limit = _limit(query.get("limit", "100"))
        records = await gw.store.records(_team(query.get("team")), limit, _since_ms(query.get("since")))
        clock = UtcClock()
        return _json({"object": "list", "data": [request_view(r, clock) for r in records]})
    return await _guarded(request, act)


async def get_request(request: Request) -> Response:
    """What happened to one request and what it cost; looked for back to `since` (a day by default)."""
    async def act(gw: Gateway) -> Response:
        request_id = request.path_params["request_id"]
        record = await gw.store.find_record(request_id, _team(request.query_params.get("team")),
                                            _since_ms(request.query_params.get("since")), LOOKUP_MAX_SCANNED)
        if record is None:
            raise GatewayError(404, f"no record of request {request_id[:200]!r} since "
                               f"{request.query_params.get('since') or DEFAULT_SINCE} (it may still be in flight, "
                               "or older: widen ?since=)", param="request_id", code="request_not_found")
        return _json(request_view(record, UtcClock()))
    return await _guarded(request, act)


def request_view(record: UsageRecord, clock: UtcClock) -> dict:
    """A record as the log line names its fields, with the money in USD too."""
    return {"object": "request", **record_fields(record, clock), "cost_usd": nano_to_usd(record.cost_nano),
            "provider_cost_nano": record.provider_cost_nano, "table_cost_nano": record.table_cost_nano}


def since_ms(value: str, now_ms: int) -> int:
    """Epoch ms of `value`: a duration back from now (`15m`, `2h`, `7d`) or an ISO 8601 time (UTC if no zone)."""
    relative = _DURATION.fullmatch(value.strip())
    if relative:
        return now_ms - int(relative[1]) * _UNIT_S[relative[2]] * 1000
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise bad_request(f"'since' must be a duration like 15m, 2h, 1d or an ISO 8601 time; got {value[:40]!r}",
                          param="since") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _since_ms(value: str | None) -> int:
    return since_ms(value or DEFAULT_SINCE, int(time.time() * 1000))


def _team(value: str | None) -> str | None:
    if value is not None and not 0 < len(value) <= MAX_NAME_CHARS:
        raise bad_request(f"'team' must be a team's name, at most {MAX_NAME_CHARS} characters", param="team")
    return value


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_REQUESTS_LISTED:
        raise bad_request(f"'limit' must be a whole number from 1 to {MAX_REQUESTS_LISTED}; got {value[:20]!r}",
                          param="limit")
    return int(value)


async def route_table(request: Request) -> Response:
    async def act(gw: Gateway) -> Response:
        return _json(gw.router.describe())
    return await _guarded(request, act)


async def dedicated_endpoints(request: Request) -> Response:
    """Dedicated services: status, capacity, cost against per-token, and the autoscaler's decisions."""
    async def act(gw: Gateway) -> Response:
        return _json(gw.dedicated.describe())
    return await _guarded(request, act)


async def reload_config(request: Request) -> Response:
    """Load the config anew (the file the gateway started from, or a YAML text in the body) everywhere."""
    async def act(gw: Gateway) -> Response:
        text = await _text_body(request, gw.config.server.max_body_bytes)
        try:
            reloaded = await gw.reloader.reload(text or None)
        except ConfigError as error:
            log.error("config reload refused, the running config stays: %s", error)
            raise GatewayError(400, f"config error: {error}; the running config stays",
                               code="invalid_config") from None
        log.info("config version %d applied: changed %s", reloaded.version, ", ".join(reloaded.changed) or "nothing")
        return _json(reloaded.doc())
    return await _guarded(request, act)


async def config_version(request: Request) -> Response:
    """The config this worker serves: its published version (0: its own file) and a digest of its text."""
    async def act(gw: Gateway) -> Response:
        return _json({"object": "config", "version": gw.reloader.version, "digest": gw.reloader.digest})
    return await _guarded(request, act)


def usage_report(team: str, first: str, last: str, days: list) -> dict:
    """Totals and per-day rows, money both in nano-dollars (exact) and USD (readable)."""
    rows = [asdict(d) for d in days]
    totals = {k: sum(r[k] for r in rows) for k in
              ("requests", "prompt_tokens", "completion_tokens", "cost_nano", "provider_cost_nano")}
    totals["cost_usd"] = nano_to_usd(totals["cost_nano"])
    for row in rows:
        row["cost_usd"] = nano_to_usd(row["cost_nano"])
    return {"team": team, "from": first, "to": last, "totals": totals, "days": rows}


def _public(record: KeyRecord) -> dict:
    return {"id": record.key_id, "team": record.team, "name": record.name, "revoked": record.revoked,
            "created": dt.datetime.fromtimestamp(record.created_ms / 1000, dt.timezone.utc).isoformat()}


def _day(value: str, param: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise bad_request(f"'{param}' must be a date YYYY-MM-DD, got {value[:40]!r}", param=param) from None


async def _body(request: Request, limit: int) -> bytes:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise GatewayError(413, f"an admin request body is at most {limit} bytes", code="request_too_large")
    return raw


async def _text_body(request: Request, limit: int) -> str:
    try:
        return (await _body(request, limit)).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("send the config as UTF-8 YAML text") from None


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    raw = await _body(request, limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise bad_request("send a JSON object {\"team\": ..., \"name\": ...}")
    return body


async def _guarded(request: Request, act) -> Response:
    gw: Gateway = request.app.state.gateway
    admin_key = gw.config.server.admin_key
    given = bearer_token(request.headers.get("authorization")) or ""
    try:
        if not admin_key:
            raise GatewayError(403, "the admin API is off: set server.admin_key to turn it on",
                               type="permission_error", code="admin_disabled")
        if not given or not hmac.compare_digest(given.encode(), admin_key.encode()):
            raise GatewayError(401, "the admin API needs 'Authorization: Bearer <server.admin_key>'",
                               code="invalid_api_key")
        return await act(gw)
    except GatewayError as error:
        return error.response()
    except StoreUnavailable:
        return GatewayError(503, "the store is unavailable; retry shortly", type="service_unavailable",
                            code="store_unavailable").response()


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")
