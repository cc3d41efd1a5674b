"""bench/RESULTS.md, written whole from one run's results.json: every figure in it is that run's.

    python -m bench publish bench/results/run-YYYYMMDD-HHMMSS     (or `bench run --publish`)

The method below is a template filled from the run's own settings; the tables are
`bench.report.render` of its results; the plot is copied next to the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.report import render

BENCH = Path(__file__).resolve().parent

METHOD = """\
## Performance

What the gateway adds to a request, measured against going straight to the upstream in
the same run, on the same machine, with every feature on: API keys, quotas (rpm, tpm, day
and month budgets, reserved then settled in Redis), accounting (per-request record and daily
totals) and Prometheus metrics. This file is written by the harness from one run
(`python -m bench publish RUN_DIR`, or `bash bench/run.sh --compare --publish`): nothing in it
is typed by hand. One command installs what it needs and runs everything:

```sh
bash bench/run.sh --compare      # drop --compare to skip LiteLLM
```

`bench/setup.sh` (which `run.sh` calls first) installs Debian's wrk, hey, redis-server and
nginx-light, this package's `bench` extra (matplotlib, py-spy), and with `--compare`
LiteLLM's proxy (`litellm[proxy]==1.106.2`) in its own virtual environment under
`~/.cache/llm-gateway-bench/`. Every server runs on loopback on free ports: {upstream} answering
every chat completion with the same JSON; `bench/upstream.py` (raw asyncio on uvloop) for SSE
streams; a private `redis-server` (no persistence); the gateway (`gateway serve --workers
{workers}`); the bare proxy (`bench/bare.py`: Starlette and one aiohttp session on uvicorn with
uvloop and httptools, {workers} workers, the same keep-alive, reading the body, posting it to the
same upstream and returning the answer, with no feature at all){litellm}. Each run writes `bench/results/<run>/{{results.json,report.md,latency.png}}` and
the logs of every server; `python -m bench report results.json` prints the tables again.

How each figure is taken:
- **Saturation**: `wrk -t1 -c{connections}` for {saturation_s:g} s, closed loop, non-streaming,
  {repeat} repeats (median [min–max]). wrk's own CPU is in the table. "vs bare" is the
  gateway's requests/s over the bare proxy's in the same repeat (measured back to back): the
  cost of the features, a ratio that holds on a busy machine where absolute figures move.
- **Redis per request**: `INFO cpu` and `INFO commandstats` of the private Redis before and
  after each gateway saturation repeat, over the requests wrk counted.
- **Added latency at a fixed rate**: `hey` at {rate:g} requests/s in two arrival shapes, "paced"
  (one connection, evenly spaced) and "bursts of {burst}" ({burst} connections ticking in
  lock-step); added = the gateway's percentile minus the direct path's at the same rate and
  shape. {low_rate:g} requests/s paced is measured too: a mostly idle system.
- **Plot** (`latency.png`) and **added latency across rates**: p50, p90, p99 against offered
  load, one paced connection per {sweep_per_connection:g} requests/s, up to 80 % of each path's
  saturation, measured once per rate; added = the path's figure minus direct's at that rate.
- **Streaming**: an aiohttp client starts {stream_rate:g} streams/s on an open-loop schedule for
  {stream_s:g} s ({stream_chunks} chunks, {stream_gap_ms:g} ms apart) and timestamps the first body
  byte and every chunk.
- **Streams on one worker**: a one-worker gateway holds {hold_streams:,} streams opened over
  {hold_ramp_s:g} s; per-stream memory = (worker RSS with all open − before) / streams.
- **Memory growth**: wrk saturation through the gateway until {soak_requests:,} answers; worker
  RSS after {soak_checkpoint:,} and at the end.
- **Accounting check**: after the measured phases, Redis's daily totals must count every
  answered request, so accounting really was on.

### The run
"""


def results_markdown(results: dict) -> str:
    s = results["settings"]
    litellm = ("; and LiteLLM's proxy from its config alone (no database, a master key, "
               f"`--num_workers {s['workers']}`)") if s.get("compare") else ""
    upstream = "nginx (one worker)" if s["upstream"] == "nginx" else "a Python server"
    method = METHOD.format(**{**s, "upstream": upstream, "litellm": litellm})
    return method + "\n" + render(results) + "\n![Latency against offered load](latency.png)\n"


def publish(run_dir: Path, out_dir: Path = BENCH) -> Path:
    """Write `out_dir`/RESULTS.md (and latency.png) from the run in `run_dir`."""
    results = json.loads((run_dir / "results.json").read_text())
    target = out_dir / "RESULTS.md"
    target.write_text(results_markdown(results))
    plot = run_dir / "latency.png"
    if plot.exists():
        shutil.copyfile(plot, out_dir / "latency.png")
    return target
