"""The `gateway endpoints` commands: NetMind dedicated services, straight through their control plane.

  gateway endpoints flavors                          GPU flavors, their price and how many are free
  gateway endpoints create [--flavor ..] [--wait S]  a service from the provider's `create:` spec
  gateway endpoints status [SERVICE_ID ...]          status, size and hourly cost (default: the provider's)
  gateway endpoints scale SERVICE_ID INSTANCES       set its instance count (0 stops it)
  gateway endpoints delete SERVICE_ID --yes          delete it

The control plane and its token come from `--config FILE [--provider NAME]` (a provider
of kind netmind-dedicated), or from `--control-url` and `--token` / $NETMIND_CONTROL_TOKEN.
Exit status: 0 done, 1 the control plane refused or failed, 2 a usage or config problem.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from gateway.config import DedicatedConfig, ServiceSpec, load_config
from gateway.dedicated.client import AVAILABLE, UNAVAILABLE, ControlPlane, ControlPlaneError, Flavor, Service
from gateway.money import nano_to_usd
from providers import netmind_dedicated

TOKEN_ENV = "NETMIND_CONTROL_TOKEN"
WAIT_POLL_S = 0.5


class UsageProblem(Exception):
    """A command that cannot run as given; the message says what to add."""


@dataclass(frozen=True, slots=True)
class Target:
    control_url: str
    token: str
    provider: str | None  # the provider named in config, if any
    config_path: str | None
    dedicated: DedicatedConfig | None


def add_commands(commands: Any) -> None:
    """The `endpoints` subcommand and its actions, on the `gateway` parser's subparsers."""
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--config", help="config file naming a netmind-dedicated provider (its control plane, "
                                         "token and create spec)")
    target.add_argument("--provider", help="which netmind-dedicated provider of --config (when it has several)")
    target.add_argument("--control-url", help=f"the control plane (default: the provider's, or "
                                              f"{netmind_dedicated.CONTROL_URL})")
    target.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"control-plane token (default: ${TOKEN_ENV}, or the provider's)")
    endpoints = commands.add_parser("endpoints", help="NetMind dedicated endpoints: flavors, create, status, "
                                                      "scale, delete")
    actions = endpoints.add_subparsers(dest="action", required=True)
    actions.add_parser("flavors", parents=[target], help="GPU flavors: price per GPU-hour and how many are free")
    create = actions.add_parser("create", parents=[target],
                                help="create a service from the provider's `create:` spec; flags override it")
    create.add_argument("--flavor", help="flavor_id (see `gateway endpoints flavors`)")
    create.add_argument("--image", help="image_url of the inference server to run")
    create.add_argument("--command", dest="image_command", help="the image's command")
    create.add_argument("--port", type=int, help="the port the image serves on")
    create.add_argument("--gpus", type=int, help="GPUs per instance (gpu_num)")
    create.add_argument("--instances", type=int, help="target_instance_number (default 1)")
    create.add_argument("--name")
    create.add_argument("--description")
    create.add_argument("--wait", type=float, metavar="SECONDS",
                        help="then wait up to SECONDS for it to be available, showing each status")
    status = actions.add_parser("status", parents=[target], help="status, size and hourly cost of services")
    status.add_argument("service_ids", nargs="*", help="default: the provider's services in --config")
    scale = actions.add_parser("scale", parents=[target], help="set a service's instance count (0 stops it)")
    scale.add_argument("service_id")
    scale.add_argument("instances", type=int)
    delete = actions.add_parser("delete", parents=[target], help="delete a service")
    delete.add_argument("service_id")
    delete.add_argument("--yes", action="store_true", help="yes, delete it")


def run(args: Any) -> int:
    try:
        target = resolve(args)
        return asyncio.run(_ACTIONS[args.action](target, args))
    except UsageProblem as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def resolve(args: Any) -> Target:
    """The control plane, token and provider config the command works with."""
    dedicated, name = None, None
    if args.config:
        config = load_config(args.config)
        known = sorted(n for n, p in config.providers.items() if p.dedicated is not None)
        if args.provider:
            if args.provider not in known:
                raise UsageProblem(f"{args.config} has no provider {args.provider!r} of kind "
                                   f"{netmind_dedicated.KIND} (it has: {', '.join(known) or 'none'})")
            name = args.provider
        elif len(known) == 1:
            name = known[0]
        else:
            raise UsageProblem(f"{args.config} has {'no' if not known else 'several'} providers of kind "
                               f"{netmind_dedicated.KIND}{': name one with --provider' if known else ''}")
        dedicated = config.providers[name].dedicated
    elif args.provider:
        raise UsageProblem("--provider names a provider of --config FILE; give the file too")
    token = args.token or (dedicated.control_token if dedicated else "")
    if not token:
        raise UsageProblem(f"no control-plane token: pass --token, set ${TOKEN_ENV}, or name a --config whose "
                           "provider has control_token (or api_key)")
    url = args.control_url or (dedicated.control_url if dedicated else netmind_dedicated.CONTROL_URL)
    return Target(url.rstrip("/"), token, name, args.config, dedicated)


def _client(target: Target) -> ControlPlane:
    timeout = target.dedicated.control_timeout_s if target.dedicated else 10.0
    return ControlPlane(target.control_url, target.token, timeout)


async def _flavors(target: Target, args: Any) -> int:
    async with _client(target) as client:
        flavors = await client.flavors()
    print(f"{'flavor_id':<24} {'display_name':<32} {'free':>5} {'GPUs/node':>9} {'USD/GPU-hour':>13}")
    for f in flavors:
        print(f"{f.flavor_id:<24} {f.display_name:<32} {_or_dash(f.available_num):>5} {_or_dash(f.node_max_gpu):>9} "
              f"{_or_dash(None if f.gpu_hour_nano is None else f'{nano_to_usd(f.gpu_hour_nano):.4f}'):>13}")
    return 0


async def _create(target: Target, args: Any) -> int:
    spec = target.dedicated.create if target.dedicated and target.dedicated.create else None
    flags = {"flavor_id": args.flavor, "image_url": args.image, "command": args.image_command, "port": args.port,
             "gpu_num": args.gpus, "instances": args.instances, "name": args.name, "description": args.description}
    given = {k: v for k, v in flags.items() if v is not None}
    if spec is None:
        missing = [flag for flag, key in (("--flavor", "flavor_id"), ("--image", "image_url")) if key not in given]
        if missing:
            where = f"providers.{target.provider}.create in {target.config_path}" if target.provider else "--config"
            raise UsageProblem(f"say what to create: {' and '.join(missing)}, or a create spec ({where})")
        spec = ServiceSpec(flavor_id=given.pop("flavor_id"), image_url=given.pop("image_url"))
    spec = ServiceSpec.model_validate({**spec.model_dump(), **given})
    async with _client(target) as client:
        service = await client.create(spec)
        print(f"created service {service.service_id}: {service.status}")
        print(f"invoke URL: {_invoke_url(target, service.service_id)}")
        if target.provider:
            print(f"to route to it, add {service.service_id!r} to providers.{target.provider}.services "
                  f"in {target.config_path}")
        if args.wait is None:
            return 0
        return await _wait(client, service, args.wait)


async def _wait(client: ControlPlane, service: Service, wait_s: float) -> int:
    """Poll until the service is available (0) or unavailable, or the time is up (1)."""
    started = time.monotonic()
    status = service.status
    while status not in (AVAILABLE, UNAVAILABLE):
        if time.monotonic() - started > wait_s:
            print(f"still {status} after {wait_s:g} s", file=sys.stderr)
            return 1
        await asyncio.sleep(WAIT_POLL_S)
        current = (await client.get(service.service_id)).status
        if current != status:
            print(f"{status} -> {current} after {time.monotonic() - started:.1f} s")
            status = current
    if status == UNAVAILABLE:
        print(f"service {service.service_id} is unavailable: its deploy failed (check the flavor and image)",
              file=sys.stderr)
        return 1
    return 0


async def _status(target: Target, args: Any) -> int:
    ids = args.service_ids or (list(target.dedicated.services) if target.dedicated else [])
    if not ids:
        raise UsageProblem("name the services, or a --config whose provider lists services")
    failed = 0
    async with _client(target) as client:
        try:
            flavors = {f.flavor_id: f for f in await client.flavors()}
        except ControlPlaneError as error:
            print(f"(no prices: {error})", file=sys.stderr)
            flavors = {}
        for service_id in ids:
            try:
                service = await client.get(service_id)
            except ControlPlaneError as error:
                print(f"{service_id}  error: {error}", file=sys.stderr)
                failed += 1
                continue
            print(_status_line(target, service, flavors))
    return 1 if failed else 0


def _status_line(target: Target, service: Service, flavors: dict[str, Flavor]) -> str:
    instances = 0 if service.status == "stopped" else service.instances
    gpus = service.gpu_num or 1
    flavor = flavors.get(service.flavor_id or "")
    hourly = "$?/h"
    if target.dedicated and target.dedicated.instance_hourly_nano is not None and instances is not None:
        hourly = f"${nano_to_usd(target.dedicated.instance_hourly_nano * instances):.4f}/h"
    elif flavor is not None and flavor.gpu_hour_nano is not None and instances is not None:
        hourly = f"${nano_to_usd(flavor.gpu_hour_nano * gpus * instances):.4f}/h"
    size = f"{_or_dash(instances)} x {service.flavor_id or '?'} ({gpus} GPU)"
    return f"{service.service_id}  {service.status:<12} {size:<28} {hourly:<12} {_invoke_url(target, service.service_id)}"


async def _scale(target: Target, args: Any) -> int:
    if args.instances < 0:
        raise UsageProblem("instances must be 0 (stop) or more")
    async with _client(target) as client:
        await client.scale(args.service_id, args.instances)
        service = await client.get(args.service_id)
    print(f"service {service.service_id}: target {args.instances} instances; now {service.status}")
    return 0


async def _delete(target: Target, args: Any) -> int:
    if not args.yes:
        raise UsageProblem(f"this deletes service {args.service_id}: its instances stop and it takes no more "
                           "traffic; run again with --yes")
    async with _client(target) as client:
        await client.delete(args.service_id)
    print(f"deleted service {args.service_id}")
    if target.dedicated and args.service_id in target.dedicated.services:
        print(f"remove it from providers.{target.provider}.services in {target.config_path}")
    return 0


def _invoke_url(target: Target, service_id: str) -> str:
    template = target.dedicated.invoke_url_template if target.dedicated else netmind_dedicated.INVOKE_URL_TEMPLATE
    return template.format(service_id=service_id)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


_ACTIONS = {"flavors": _flavors, "create": _create, "status": _status, "scale": _scale, "delete": _delete}
