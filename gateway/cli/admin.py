"""CLI commands that talk to a running gateway's admin API: keys, usage, requests and config reloads."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

import httpx

from gateway.accounting.periods import utc_periods
from gateway.config import load_config


def run(args: Any) -> int:
    url, admin_key = _target(args)
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {admin_key}"}, timeout=10) as client:
        if args.command == "usage":
            return _usage(client, args)
        if args.command == "reload":
            return _reload(client, args)
        if args.command == "requests":
            return _requests(client, args)
        if args.action == "create":
            response = client.post("/admin/keys", json={"team": args.team, "name": args.name})
        elif args.action == "list":
            response = client.get("/admin/keys", params={"team": args.team} if args.team else None)
        else:
            response = client.delete(f"/admin/keys/{args.key_id}")
    return _show(response, _key_lines)


def _usage(client: httpx.Client, args: Any) -> int:
    today, month = utc_periods()
    first = args.first or (today if args.period == "day" else month + "-01")
    response = client.get("/admin/usage", params={"team": args.team, "from": first, "to": args.last or today})
    return _show(response, _usage_lines)


def _reload(client: httpx.Client, args: Any) -> int:
    text = b""
    if args.send:
        with open(args.send, "rb") as f:
            text = f.read()
    response = client.post("/admin/reload", content=text, headers={"content-type": "application/yaml"},
                           timeout=60)  # it waits for the new routes' first poll
    return _show(response, _reload_lines)


def _requests(client: httpx.Client, args: Any) -> int:
    params = {name: value for name, value in (("team", args.team), ("since", args.since)) if value}
    if args.request_id:
        return _show(client.get(f"/admin/requests/{quote(args.request_id, safe='')}", params=params),
                     _request_lines)
    return _show(client.get("/admin/requests", params={**params, "limit": args.limit}), _request_rows)


def _target(args: Any) -> tuple[str, str]:
    url, admin_key = args.url, args.admin_key
    if args.config:
        config = load_config(args.config)
        host = "127.0.0.1" if config.server.host in ("0.0.0.0", "::") else config.server.host
        url = url or f"http://{host}:{config.server.port}"
        admin_key = admin_key or config.server.admin_key
    if not url or not admin_key:
        sys.exit("name the gateway with --config FILE, or --url and --admin-key (or $GATEWAY_ADMIN_KEY)")
    return url, admin_key


def _show(response: httpx.Response, lines: Any) -> int:
    doc = response.json()
    if response.status_code >= 400:
        print(f"error {response.status_code}: {doc.get('error', {}).get('message', doc)}", file=sys.stderr)
        return 1
    for line in lines(doc):
        print(line)
    return 0


def _key_lines(doc: dict) -> list[str]:
    if "key" in doc:
        return [f"created key {doc['id']} for team {doc['team']} (shown once, keep it safe):", doc["key"]]
    if "revoked" in doc and "data" not in doc:
        return [f"revoked {doc['id']}"]
    return [f"{k['id']}  {k['team']:<16} {'revoked' if k['revoked'] else 'active ':<8} {k['created']}  {k['name']}"
            for k in doc["data"]]


def _usage_lines(doc: dict) -> list[str]:
    t = doc["totals"]
    out = [f"team {doc['team']}, {doc['from']} to {doc['to']}: {t['requests']} requests, "
           f"{t['prompt_tokens']} prompt + {t['completion_tokens']} completion tokens, ${t['cost_usd']:.6f}"]
    for day in doc["days"]:
        out.append(f"  {day['day']}  {day['requests']:>8} req  ${day['cost_usd']:.6f}")
        for route, row in sorted(day["by_route"].items()):
            out.append(f"      {route:<40} {row.get('requests', 0):>6} req  {row.get('cost_nano', 0)} nano$")
    return out


def _reload_lines(doc: dict) -> list[str]:
    out = [f"config version {doc['version']} applied; changed: {', '.join(doc['changed']) or 'nothing'}"]
    if doc["needs_restart"]:
        out.append(f"needs a restart to apply: {', '.join(doc['needs_restart'])}")
    out.extend(f"warning: {warning}" for warning in doc["warnings"])
    return out


def _request_lines(doc: dict) -> list[str]:
    return [f"{name:<18} {value}" for name, value in doc.items() if name != "object"]


def _request_rows(doc: dict) -> list[str]:
    return [f"{r['time']}  {r['request_id']}  {r['team'] or '-':<12} {r['model'] or '-':<20} "
            f"{r['provider'] or '-':<12} {r['status']} {r['error_code'] or '':<16} "
            f"{r['prompt_tokens']}+{r['completion_tokens']} tok  ${r['cost_usd']:.6f}  {r['duration_ms']} ms"
            for r in doc["data"]]
