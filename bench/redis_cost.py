"""Redis's own CPU per gateway request: `INFO cpu` and `INFO commandstats` before and after a phase.

Redis shares the cores with the gateway, so its CPU per request is part of the gateway's
cost. `used_cpu_sys + used_cpu_user` is the whole server process (its main thread and
background threads); commandstats says which calls it went to. A command a script runs
is counted on its own line too, and its time is also inside the script's: the calls the
gateway sent are the scripts' (EVALSHA), the rest ran inside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

_SCRIPTS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})


@dataclass(frozen=True, slots=True)
class Snapshot:
    cpu_s: float
    commands: dict[str, tuple[int, int]]  # command -> (calls, microseconds inside it)


@dataclass(slots=True)
class RedisCost:
    """What one phase cost Redis, per request the load generator counted."""

    requests: int
    cpu_us_per_request: float
    calls_per_request: float  # sent by the gateway: scripts, and any plain command
    command_calls_per_request: float  # every command run, those inside scripts included
    script_us_per_request: float  # time inside scripts, the commands they run included
    by_command: dict[str, list[float]] = field(default_factory=dict)  # command -> [calls, us] per request


def snapshot(port: int) -> Snapshot:
    client = redis.Redis(port=port)
    try:
        cpu = client.info("cpu")
        stats = client.info("commandstats")
    finally:
        client.close()
    commands = {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}
    return Snapshot(float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), commands)


def cost(before: Snapshot, after: Snapshot, requests: int) -> RedisCost:
    n = max(requests, 1)
    by_command: dict[str, list[float]] = {}
    for name, (calls, usec) in after.commands.items():
        was_calls, was_usec = before.commands.get(name, (0, 0))
        if calls - was_calls > 0 and name != "info":
            by_command[name] = [(calls - was_calls) / n, (usec - was_usec) / n]
    scripts = [v for name, v in by_command.items() if name in _SCRIPTS]
    script_calls = sum(c for c, _ in scripts)
    inner = sum(c for name, (c, _) in by_command.items() if name not in _SCRIPTS)
    return RedisCost(requests=requests, cpu_us_per_request=(after.cpu_s - before.cpu_s) / n * 1e6,
                     calls_per_request=script_calls if scripts else inner,
                     command_calls_per_request=script_calls + inner,
                     script_us_per_request=sum(u for _, u in scripts), by_command=by_command)
