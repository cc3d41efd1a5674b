"""The PNG of a run: latency percentiles against offered load, one panel per path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter, ScalarFormatter

from bench.report import median, vs_bare

_PERCENTILES = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"))


def plot(results: dict, path: Path) -> Path:
    """Write the sweep of every measured path into one figure at `path`."""
    sweep = results["sweep"]
    names = [n for n in ("direct", "bare", "gateway", "litellm") if sweep.get(n)]
    ratios = vs_bare(results)
    # One y scale for every panel, so that paths compare at a glance.
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False, sharey=True)
    s = results["settings"]
    for ax, name in zip(axes[0], names):
        runs = sorted(sweep[name], key=lambda r: r["offered_rps"])
        offered = [r["offered_rps"] for r in runs]
        for field, label in _PERCENTILES:
            ax.plot(offered, [r[field] for r in runs], marker="o", label=label)
        title = name if name == "direct" else f"{name} ({s['workers']} workers)"
        if name == "gateway" and ratios:
            title += f"\n{median(ratios):.0%} of bare's saturation throughput"
        ax.set_title(title)
        ax.set_xlabel("offered load (requests/s)")
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(offered, [f"{o:g}" for o in offered], rotation=45)
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Latency against offered load (hey, one paced connection per "
                 f"{s['sweep_per_connection']:g} req/s; non-streaming)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
