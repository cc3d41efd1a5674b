"""The benchmark harness keeps working: a short run of `python -m bench run --smoke`, end to end.

It starts the fake upstream, a private Redis, the gateway (two workers, everything on),
wrk, hey and the streaming client, and checks that every phase produced figures without
a failed request. LiteLLM is not needed (no --compare).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ("wrk", "hey", "redis-server")


def _missing() -> list[str]:
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib")
    return missing


@pytest.mark.slow
def test_smoke_run_measures_every_path_without_a_failed_request(tmp_path: Path) -> None:
    missing = _missing()
    if missing:
        message = f"the benchmark needs {', '.join(missing)}: run bash bench/setup.sh"
        if os.environ.get("GATEWAY_REQUIRE_REAL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path / "smoke"
    run = subprocess.run([sys.executable, "-m", "bench", "run", "--smoke", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    results = json.loads((out / "results.json").read_text())

    direct, gateway = results["saturation"]["direct"][0], results["saturation"]["gateway"][0]
    bare = results["saturation"]["bare"][0]
    assert direct["errors"] == 0 and gateway["errors"] == 0 and bare["errors"] == 0
    assert gateway["rps"] > 0 and bare["rps"] > 0
    assert direct["rps"] > gateway["rps"], "the fake upstream must never be the bottleneck"
    for key, runs in results["fixed"].items():
        assert runs[0]["requests"] > 0 and runs[0]["errors"] == 0, key
    for path in ("direct", "gateway"):
        streams = results["streams"][path]
        assert streams["ok"] == streams["streams"] > 0, streams["error_samples"]
    hold = results["hold"]
    assert hold["errors"] == 0 and hold["ok"] == results["settings"]["hold_streams"], hold["error_samples"]
    assert results["soak"]["end_requests"] >= results["settings"]["soak_requests"]
    accounting = results["accounting"]
    assert accounting["settled_in_redis"] >= accounting["answered_by_wrk_and_hey"] > 0
    assert (out / "latency.png").stat().st_size > 10_000
    assert "| gateway |" in run.stdout and "**Targets**" in run.stdout
    # The yardstick ran in the same run, and Redis's share of a request was measured.
    assert "of the bare proxy's, same run" in run.stdout
    # Fewer script calls than requests: the settlements of a loop turn share one, and admissions
    # come mostly from leases, a store call per lease (without either, it was 2 a request).
    assert 0 < results["redis"]["saturation gateway"][0]["calls_per_request"] < 1

    # Published, the file is the run's own tables under a method filled from the run's settings.
    from bench.publish import publish
    from bench.report import render

    written = publish(out, out_dir=tmp_path).read_text()
    assert render(results) in written and f"`wrk -t1 -c{results['settings']['connections']}`" in written
    assert (tmp_path / "latency.png").exists()
