"""Where a gateway worker's CPU goes under saturation: py-spy samples, summed by request step.

Starts the same servers as a run, saturates the gateway with wrk, and records every
worker with `py-spy record --subprocesses` (raw, collapsed stacks; idle time left out).
Each sample is charged to the deepest request step on its stack (auth, admission,
upstream, settlement...), or, outside any step, to the library it is in (uvicorn,
Starlette, aiohttp callbacks, the event loop). Shares become microseconds per request
with the workers' CPU time and the requests wrk counted over the same window.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import payloads, stack
from bench.processes import Service, raise_open_files_limit
from bench.saturation import Saturation, run_wrk, write_script
from bench.usage import cpu_seconds

# (step, function name, file fragment); the deepest frame that matches names the step.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("auth: key hash and lookup", "authenticate", "gateway/auth.py"),
    ("body read (ASGI receive, limits)", "read_body", "gateway/request.py"),
    ("parse and validate the body", "read_call", "gateway/call.py"),
    ("model lookup and route plan", "find_model", "gateway/proxy.py"),
    ("model lookup and route plan", "plan", "gateway/routing/"),
    ("admission: quota script (client side)", "admit", "gateway/accounting/admission.py"),
    ("adapt: upstream body", "upstream_body", "gateway/upstream/adapt.py"),
    ("router bookkeeping (begin, opened, end)", "begin", "gateway/routing/"),
    ("router bookkeeping (begin, opened, end)", "answered", "gateway/routing/"),
    ("router bookkeeping (begin, opened, end)", "finished", "gateway/routing/"),
    ("upstream request (aiohttp, awaited)", "open", "gateway/upstream/client.py"),
    ("response: usage check, send", "_respond", "gateway/exchange.py"),
    ("settlement: usage script (client side)", "settle", "gateway/accounting/settlement.py"),
    ("metrics (prometheus_client)", "", "prometheus_client/"),
)
# Outside every step: the deepest frame from one of these libraries names the cost.
# asyncio comes last: its frames sit under the library that called it.
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("upstream client callbacks (aiohttp parse)", "aiohttp/"),
    ("Redis client, in tasks of its own (wait_for, reads)", "redis/"),
    ("Starlette (routing, middleware, send)", "starlette/"),
    ("uvicorn + httptools (HTTP parse, send)", "uvicorn/"),
    ("gateway, in callbacks", "gateway/"),
    ("asyncio (tasks, timeouts, streams)", "asyncio/"),
)
GLUE = "request path glue (gateway/proxy.py, exchange.py and co.)"
LOOP = "event loop (uvloop: epoll, socket I/O, callbacks)"
# Frames under which every sample of a worker sits: start-up, the server, the loop runner.
_ROOTS = ("<frozen runpy>", "gateway/__main__.py", "gateway/cli/", "uvicorn/main.py", "uvicorn/server.py",
          "uvicorn/_compat.py", "uvicorn/_subprocess.py", "uvicorn/supervisors/", "asyncio/runners.py",
          "multiprocessing/", "uvloop/__init__.py", "<string>")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def categorise(stack_frames: list[str]) -> str:
    """The step (or library) one sampled stack, root first, is charged to."""
    parsed = []
    for frame in stack_frames:
        m = _FRAME.match(frame)
        parsed.append((m.group("func"), m.group("file")) if m else (frame, ""))
    # A process frame's command line may hold ';' and split into a piece with no file: a root too.
    while parsed and (not parsed[0][1] or any(root in parsed[0][1] for root in _ROOTS)):
        parsed.pop(0)
    for func, file in reversed(parsed):
        for step, name, fragment in STEPS:
            if fragment in file and (not name or func == name or func.endswith("." + name)):
                return step
    for _, file in reversed(parsed):
        for label, fragment in LIBRARIES[:-1]:
            if fragment in file:
                return GLUE if fragment == "gateway/" else label
    if any(LIBRARIES[-1][1] in file for _, file in parsed):
        return LIBRARIES[-1][0]
    return LOOP


def summarise(raw: Path, workers: set[int] | None = None) -> tuple[collections.Counter[str],
                                                                    collections.Counter[str], int]:
    """Samples per step, samples per leaf package (self time), and the total, from py-spy's raw output.

    Only the event-loop thread of the `workers` counts: uvicorn's supervisor and each
    worker's health-check thread sit blocked on a pipe, which py-spy does not always see as idle.
    """
    steps: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        parts = stack_text.split(";")
        owners = [int(f.split(":", 1)[0].split()[1]) for f in parts if f.startswith("process ")]
        if workers and owners and owners[-1] not in workers:
            continue
        frames = [f for f in parts if not f.startswith("process ")]
        if any(f.startswith("Thread._bootstrap ") for f in frames):
            continue
        n = int(count)
        total += n
        steps[categorise(frames)] += n
        leaves[_package(frames[-1]) if frames else "?"] += n
    return steps, leaves, total


_OWN_CODE = str(Path(__file__).resolve().parent.parent)  # this checkout, wherever it lives


def _package(frame: str) -> str:
    m = _FRAME.match(frame)
    file = m.group("file") if m else frame
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    if file.startswith((_OWN_CODE, "gateway/", "providers/")):
        return "gateway (own code)"
    if "/lib/python" in file or file.startswith("<frozen"):
        parts = file.split("/lib/python", 1)[-1].split("/")
        return f"stdlib {parts[1] if len(parts) > 1 else file}"
    return file or "?"


def profile(directory: Path, *, workers: int, seconds: float, connections: int, upstream: str,
            rate_hz: int = 100, source: Path = stack.ROOT) -> str:
    """Run the profile and return its tables as Markdown; raw stacks stay in `directory`."""
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        raise stack.MissingTool("py-spy is not installed; run: bash bench/setup.sh")
    directory.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    services: list[Service] = []
    try:
        backends = stack.start_backends(directory, upstream, services)
        json_up, stream_up, redis = backends.json, backends.stream, backends.redis
        teams = stack.bench_teams(4)
        gateway = stack.start_gateway(directory, "gateway", workers, redis.port, json_up.port, stream_up.port, teams,
                                      source=source.resolve())
        services.append(gateway)
        url = gateway.url + "/v1/chat/completions"
        script = write_script(directory, "gateway", payloads.request_body(payloads.JSON_MODEL), [t.key for t in teams])
        run_wrk(url, script, connections=16, seconds=3)  # warm-up
        pids = gateway.worker_pids()
        result: list[Saturation] = []
        load = threading.Thread(target=lambda: result.append(
            run_wrk(url, script, connections=connections, seconds=seconds + 3)))
        load.start()
        time.sleep(1.5)
        cpu_before = sum(cpu_seconds(p) or 0 for p in pids)
        raw = directory / "pyspy-raw.txt"
        target = ["--pid", str(gateway.pid), "--subprocesses"] if workers > 1 else ["--pid", str(pids[0])]
        started = time.monotonic()
        spy = subprocess.run([pyspy, "record", *target, "--duration", str(int(seconds)), "--rate", str(rate_hz),
                              "--format", "raw", "--output", str(raw)], capture_output=True, text=True)
        window = time.monotonic() - started
        cpu = sum(cpu_seconds(p) or 0 for p in pids) - cpu_before
        load.join()
        if spy.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {spy.stderr.strip()}")
    finally:
        for service in reversed(services):
            service.stop()
    sat = result[0]
    requests = sat.rps * window
    return render(raw, set(pids), sat, cpu, requests, window, workers, connections)


def render(raw: Path, pids: set[int], sat: Saturation, cpu_s: float, requests: float, window_s: float,
           workers: int, connections: int) -> str:
    steps, leaves, total = summarise(raw, pids)
    per_request_us = cpu_s / max(requests, 1) * 1e6
    lines = [f"Gateway, {workers} workers, saturated by wrk ({connections} connections): {sat.rps:,.0f} req/s "
             f"while sampled (py-spy slows it a little). Worker CPU {cpu_s / window_s:.2f} cores over "
             f"{window_s:.0f} s = {per_request_us:,.0f} us of worker CPU per request. {total:,} samples "
             f"(idle excluded); raw stacks: {raw}.", "",
             "| where the worker's CPU goes | share | us per request |", "| --- | --- | --- |"]
    for step, n in steps.most_common():
        lines.append(f"| {step} | {n / total:.1%} | {n / total * per_request_us:,.0f} |")
    lines += ["", "| self time by package (leaf frame) | share |", "| --- | --- |"]
    for package, n in leaves.most_common(15):
        lines.append(f"| {package} | {n / total:.1%} |")
    return "\n".join(lines) + "\n"


def main() -> None:  # python -m bench.profile RAW [WORKER_PID...]: re-summarise a recorded profile
    steps, leaves, total = summarise(Path(sys.argv[1]), {int(p) for p in sys.argv[2:]})
    for step, n in steps.most_common():
        print(f"{n / total:6.1%}  {step}")


if __name__ == "__main__":
    main()
