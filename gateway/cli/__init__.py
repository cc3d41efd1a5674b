"""The `gateway` command: serve, check a config, reload it, manage keys, report usage and requests, manage
dedicated endpoints, run the mock upstream alone."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from gateway.cli import endpoints as cli_endpoints
from gateway.cli import mock as cli_mock
from gateway.config import Config, ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description="An OpenAI-compatible LLM gateway.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="YAML config file")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--access-log", action="store_true", help="uvicorn's access log too (costs throughput; the request lines say more)")

    check = commands.add_parser("check-config", help="validate a config file and say what it serves")
    check.add_argument("file")

    target = argparse.ArgumentParser(add_help=False)  # how the admin commands reach a running gateway
    target.add_argument("--config", help="config file (for the gateway's address and admin key)")
    target.add_argument("--url", help="gateway base URL, e.g. http://127.0.0.1:8080")
    target.add_argument("--admin-key", default=os.environ.get("GATEWAY_ADMIN_KEY"))

    keys = commands.add_parser("keys", help="create, list or revoke API keys (through the admin API)")
    key_commands = keys.add_subparsers(dest="action", required=True)
    create = key_commands.add_parser("create", parents=[target])
    create.add_argument("--team", required=True)
    create.add_argument("--name", default="")
    listing = key_commands.add_parser("list", parents=[target])
    listing.add_argument("--team")
    revoke = key_commands.add_parser("revoke", parents=[target])
    revoke.add_argument("key_id")

    usage = commands.add_parser("usage", parents=[target], help="a team's usage for this UTC day or month")
    usage.add_argument("--team", required=True)
    usage.add_argument("--period", choices=("day", "month"), default="month")
    usage.add_argument("--from", dest="first")
    usage.add_argument("--to", dest="last")

    reload = commands.add_parser("reload", parents=[target], help="load the config anew on every worker, "
                                 "without a restart (the gateway reads its own file again unless --send)")
    reload.add_argument("--send", metavar="FILE", help="send this YAML file as the new config instead")

    requests = commands.add_parser("requests", parents=[target],
                                   help="recent requests, or what happened to one (its id) and what it cost")
    requests.add_argument("request_id", nargs="?", help="one request's id (its x-request-id)")
    requests.add_argument("--team")
    requests.add_argument("--since", help="how far back: 15m, 2h, 1d (the default) or an ISO 8601 time")
    requests.add_argument("--limit", type=int, default=20)

    cli_endpoints.add_commands(commands)
    cli_mock.add_command(commands)

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve_command(args)
        if args.command == "check-config":
            return check_command(args.file)
        if args.command == "endpoints":
            return cli_endpoints.run(args)
        if args.command == "mock":
            return cli_mock.run(args)
        from gateway.cli import admin as cli_admin

        return cli_admin.run(args)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2


def serve_command(args: Any) -> int:
    import uvicorn

    from gateway import supervisor
    from gateway.observability.logs import logging_config
    from gateway.server import raise_open_files_limit

    config = load_config(args.config)  # its warnings are logged by the workers, once each
    workers = args.workers or config.server.workers
    if workers > 1 and config.store.url.startswith("memory://"):
        raise ConfigError("server.workers", "several workers need a shared store; set store.url to redis://...")
    os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
    if workers > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _prepare_multiprocess_metrics()
    raise_open_files_limit()
    server = config.server
    return supervisor.run(uvicorn.Config(
        "gateway.app:app_from_env", factory=True, host=args.host or server.host, port=args.port or server.port,
        workers=workers, loop="uvloop", http="gateway.server:GatewayProtocol", log_config=logging_config(server.log),
        log_level=server.log.level, access_log=args.access_log, timeout_keep_alive=server.keepalive_timeout_s,
        timeout_graceful_shutdown=server.shutdown_grace_s))


def check_command(path: str) -> int:
    config = load_config(path)
    for warning in config.warnings:
        print(f"warning: {warning}")
    print(describe(config))
    return 0


def describe(config: Config) -> str:
    lines = [f"ok: {len(config.providers)} providers, {len(config.models)} models, {len(config.teams)} teams; "
             f"store {config.store.address.describe() if config.store.address else 'in this process (memory://)'}"]
    for name, model in config.models.items():
        lines.append(f"  {name}: " + ", ".join(f"{r.provider}:{r.model}" for r in model.routes))
    return "\n".join(lines)


def _prepare_multiprocess_metrics() -> None:
    """Workers share counters through files in one directory, emptied at start."""
    import shutil
    import tempfile

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="gateway-metrics-")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


if __name__ == "__main__":
    sys.exit(main())
