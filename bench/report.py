"""The tables of a run, as Markdown, from its results.json: figures, processes and targets.

Repeated figures are medians, with the range over the repeats in brackets. Added
latency is the gateway's percentile minus the direct path's at the same rate and
arrival shape, both from the same run. "vs bare" is the gateway's throughput as a share
of the bare proxy's (bench.bare) in the same repeat: what the features cost.
"""

from __future__ import annotations

import math
import statistics

MiB = 1024 * 1024

# (what, threshold) of the targets; each is checked by `targets()`.
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
TARGET_SATURATION_RPS = 2500.0
TARGET_VS_BARE = 0.60
TARGET_PACED_RATES = (50.0, 500.0)  # the added-latency targets hold at every sweep rate in this range
TARGET_VS_LITELLM = 30.0
TARGET_TTFB_ADDED_P50_MS = 2.0
TARGET_HOLD_STREAMS = 1000
TARGET_BYTES_PER_STREAM = 50 * 1024
TARGET_GROWTH = 0.10


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def spread(values: list[float], fmt: str) -> str:
    """`median [min–max]` when repeated, else the one value."""
    if len(values) < 2:
        return format(values[0], fmt) if values else "–"
    return f"{format(median(values), fmt)} [{format(min(values), fmt)}–{format(max(values), fmt)}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def saturation_rps(results: dict, path: str) -> float:
    return median([r["rps"] for r in results["saturation"].get(path, [])])


def fixed(results: dict, path: str, shape: str, rate: float) -> list[dict]:
    return results["fixed"].get(f"{path}|{shape}|{rate:g}", [])


def added(results: dict, path: str, shape: str, rate: float, field: str) -> float:
    mine, direct = fixed(results, path, shape, rate), fixed(results, "direct", shape, rate)
    if not mine or not direct:
        return math.nan
    return median([r[field] for r in mine]) - median([r[field] for r in direct])


def vs_bare(results: dict) -> list[float]:
    """The gateway's requests/s over the bare proxy's, one ratio per repeat (the two ran back to back)."""
    gateway, bare = results["saturation"].get("gateway", []), results["saturation"].get("bare", [])
    return [g["rps"] / b["rps"] for g, b in zip(gateway, bare) if b["rps"]]


def paced_added(results: dict, path: str, field: str) -> dict[float, float]:
    """Offered rate -> this path's percentile minus direct's, over the sweep (each rate measured once)."""
    direct = {r["offered_rps"]: r[field] for r in results["sweep"].get("direct", [])}
    return {r["offered_rps"]: r[field] - direct[r["offered_rps"]] for r in results["sweep"].get(path, [])
            if r["offered_rps"] in direct}


def render(results: dict) -> str:
    s = results["settings"]
    m = results["machine"]
    parts = [(f"Machine: {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}, "
             f"{m['date']}; load average at start {m['load_at_start']}, at end {m.get('load_at_end', '?')}; "
             f"CPU pressure (10 s, 60 s, 300 s: share of time a task waited for a core) at start "
             f"{m.get('cpu_pressure_at_start', '?')}, at end {m.get('cpu_pressure_at_end', '?')}. "
             f"Upstream for JSON: {s['upstream']}; "
             f"streams: bench.upstream. Gateway: {s['workers']} workers, {s['teams']} teams, auth, quotas "
             f"(rpm, tpm, day and month budgets), accounting and metrics on, Redis of its own. "
             f"Repeats: {s['repeat']} (median [min–max]). No CPU pinning: every process shares both cores.")]
    parts.append(_saturation_table(results))
    parts.append(_fixed_table(results))
    parts.append(_sweep_table(results))
    parts.append(_stream_table(results))
    parts.append(_hold_and_soak(results))
    parts.append(_process_table(results))
    parts.append(_redis_table(results))
    acc = results.get("accounting") or {}
    if acc:
        parts.append(f"Accounting check: {acc['settled_in_redis']:,} requests settled in Redis for "
                     f"{acc['answered_by_wrk_and_hey']:,} answered in the measured phases (the warm-up adds a "
                     f"few more).")
    parts.append(targets_table(results))
    if results.get("notes"):
        parts.append("Notes: " + "; ".join(results["notes"]))
    return "\n\n".join(part for part in parts if part) + "\n"


def serving_cores(results: dict, path: str) -> list[float]:
    """Cores the serving processes of `path` used in each saturation repeat (gateway or LiteLLM workers)."""
    prefix = {"gateway": "gateway worker", "bare": "bare worker", "litellm": "litellm", "direct": "upstream ("}[path]
    return [sum(u["cores"] for u in usage if u["label"].startswith(prefix))
            for usage in results["processes"].get(f"saturation {path}", [])]


def per_core_rps(results: dict, path: str) -> float:
    """Requests per second per core its servers were busy: throughput that other jobs on the cores disturb less."""
    runs = results["saturation"].get(path, [])
    cores = serving_cores(results, path)
    return median([r["rps"] / c for r, c in zip(runs, cores) if c > 0])


def _saturation_table(results: dict) -> str:
    s = results["settings"]
    litellm = saturation_rps(results, "litellm")
    litellm_per_core = per_core_rps(results, "litellm")
    rows = []
    for path, runs in results["saturation"].items():
        workers = "–" if path == "direct" else str(s["workers"])
        ratio, bare = "", ""
        if path == "gateway" and vs_bare(results):
            bare = spread([100 * r for r in vs_bare(results)], ".0f") + " %"
        if not math.isnan(litellm) and path == "gateway":
            ratio = (f"{saturation_rps(results, path) / litellm:.1f}x / "
                     f"{per_core_rps(results, path) / litellm_per_core:.1f}x")
        rows.append([path, workers, spread([r["rps"] for r in runs], ",.0f"),
                     spread([r["p50_ms"] for r in runs], ".2f"), spread([r["p99_ms"] for r in runs], ".2f"),
                     str(sum(r["errors"] for r in runs)), spread(serving_cores(results, path), ".2f"),
                     f"{per_core_rps(results, path):,.0f}", bare, ratio,
                     f"{median([r['client_cpu_s'] / r['seconds'] for r in runs]):.2f}"])
    head = (f"**Saturation** (wrk, {s['connections']} connections, closed loop, {s['saturation_s']:g} s each, "
            "non-streaming; server cores = CPU its serving processes used, the upstream's for direct)")
    return head + "\n\n" + _table(["path", "workers", "requests/s", "p50 ms", "p99 ms", "errors", "server cores",
                                   "req/s per server core", "vs bare", "vs LiteLLM (req/s / per core)", "wrk CPU (cores)"],
                                  rows)


def _fixed_table(results: dict) -> str:
    rows = []
    for key, runs in results["fixed"].items():
        path, shape, rate = key.split("|")
        r = float(rate)
        is_direct = path == "direct"
        rows.append([path, rate, shape, spread([x["achieved_rps"] for x in runs], ",.0f"),
                     spread([x["p50_ms"] for x in runs], ".2f"), spread([x["p99_ms"] for x in runs], ".2f"),
                     "–" if is_direct else f"{added(results, path, shape, r, 'p50_ms'):+.2f}",
                     "–" if is_direct else f"{added(results, path, shape, r, 'p99_ms'):+.2f}",
                     str(sum(x["errors"] for x in runs))])
    rows.sort(key=lambda row: (-float(row[1]), row[2], ["direct", "bare", "gateway", "litellm"].index(row[0])))
    head = ("**Latency at a fixed rate** (hey; \"paced\": one connection, evenly spaced arrivals; \"bursts of k\": "
            "k connections ticking in lock-step; non-streaming; added = this path minus direct)")
    return head + "\n\n" + _table(["path", "offered/s", "arrivals", "achieved/s", "p50 ms", "p99 ms",
                                   "added p50 ms", "added p99 ms", "errors"], rows)


def _sweep_table(results: dict) -> str:
    sweep = results["sweep"]
    direct = {r["offered_rps"]: r for r in sweep.get("direct", [])}
    paths = [p for p in ("bare", "gateway") if sweep.get(p)]
    added = {p: (paced_added(results, p, "p50_ms"), paced_added(results, p, "p99_ms")) for p in paths}
    rows = []
    for rate in sorted(direct):
        d = direct[rate]
        row = [f"{rate:g}", str(d["connections"]), f"{d['p50_ms']:.2f}", f"{d['p99_ms']:.2f}"]
        for p in paths:
            a50, a99 = added[p][0].get(rate), added[p][1].get(rate)
            row += ["–" if a50 is None else f"{a50:+.2f}", "–" if a99 is None else f"{a99:+.2f}"]
        rows.append(row)
    header = ["offered/s", "connections", "direct p50 ms", "direct p99 ms"]
    for p in paths:
        header += [f"{p} added p50", f"{p} added p99"]
    return ("**Added latency, paced, across rates** (the plot's sweep: hey, one connection per "
            f"{results['settings']['sweep_per_connection']:g} req/s, measured once each; added = path minus direct)"
            "\n\n" + _table(header, rows))


def _stream_table(results: dict) -> str:
    s = results["settings"]
    direct = results["streams"].get("direct")
    rows = []
    for path, r in results["streams"].items():
        add50 = "–" if path == "direct" or not direct else f"{r['ttfb_p50_ms'] - direct['ttfb_p50_ms']:+.2f}"
        add99 = "–" if path == "direct" or not direct else f"{r['ttfb_p99_ms'] - direct['ttfb_p99_ms']:+.2f}"
        rows.append([path, f"{r['ttfb_p50_ms']:.2f}", f"{r['ttfb_p99_ms']:.2f}", add50, add99,
                     f"{r['gap_p50_ms']:.2f}", f"{r['gap_p99_ms']:.2f}", f"{r['ok']}/{r['streams']}"])
    head = (f"**Streaming** (aiohttp client, {s['stream_rate']:g} streams/s started on an open-loop schedule for "
            f"{s['stream_s']:g} s; each {s['stream_chunks']} chunks {s['stream_gap_ms']:g} ms apart; TTFB = request "
            "sent to first body byte)")
    return head + "\n\n" + _table(["path", "TTFB p50 ms", "TTFB p99 ms", "added p50 ms", "added p99 ms",
                                   "chunk gap p50 ms", "gap p99 ms", "ok"], rows)


def _hold_and_soak(results: dict) -> str:
    s = results["settings"]
    out = []
    hold = results.get("hold")
    if hold:
        x = hold["extra"]
        out.append(
            f"**{s['hold_streams']:,} streams held by one worker** (opened over {s['hold_ramp_s']:g} s, each "
            f"{s['hold_chunks']} chunks {s['hold_gap_ms']:g} ms apart)\n\n" + _table(
                ["streams", "ok", "errors", "open at once", "worker RSS before", "with all open", "per stream"],
                [[str(hold["streams"]), str(hold["ok"]), str(hold["errors"]), str(x["open_when_measured"]),
                  f"{x['rss_before'] / MiB:.1f} MiB", f"{x['rss_all_open'] / MiB:.1f} MiB",
                  f"{x['per_stream_bytes'] / 1024:.1f} KiB"]]))
        if hold["error_samples"]:
            out.append("Stream errors (first few): " + "; ".join(hold["error_samples"]))
    soak = results.get("soak")
    if soak:
        out.append("**Memory over a soak** (wrk saturation through the gateway)\n\n" + _table(
            ["after requests", "RSS per worker"],
            [[f"{soak['checkpoint_requests']:,}", ", ".join(f"{b / MiB:.1f} MiB" for b in soak["checkpoint_rss"])],
             [f"{soak['end_requests']:,}", ", ".join(f"{b / MiB:.1f} MiB" for b in soak["end_rss"])]])
            + f"\n\nLargest growth of one worker: {soak['growth']:+.1%}.")
    return "\n\n".join(out)


def _process_table(results: dict) -> str:
    rows = []
    for phase, repeats in results["processes"].items():
        if not phase.startswith(("saturation", "streams")):
            continue
        # The repeat with the median CPU time of all its processes stands for the phase.
        ordered = sorted(repeats, key=lambda usage: sum(u["cpu_s"] for u in usage))
        usage = ordered[len(ordered) // 2]
        for u in usage:
            rows.append([phase, u["label"], f"{u['cores']:.2f}", f"{u['peak_rss'] / MiB:.1f}"])
    return ("**CPU and peak memory per process** (mean cores busy over the phase; peak resident memory)\n\n"
            + _table(["phase", "process", "CPU (cores)", "peak RSS MiB"], rows))


def _redis_table(results: dict) -> str:
    rows = []
    for phase, repeats in results.get("redis", {}).items():
        if not repeats:
            continue
        commands = sorted({c for r in repeats for c in r["by_command"]})
        detail = ", ".join(
            f"{c} {median([r['by_command'].get(c, [0, 0])[0] for r in repeats]):.2f} calls "
            f"{median([r['by_command'].get(c, [0, 0])[1] for r in repeats]):.1f} us" for c in commands)
        rows.append([phase, spread([r["cpu_us_per_request"] for r in repeats], ".1f"),
                     spread([r["script_us_per_request"] for r in repeats], ".1f"),
                     spread([r["calls_per_request"] for r in repeats], ".2f"),
                     spread([r["command_calls_per_request"] for r in repeats], ".1f"), detail])
    if not rows:
        return ""
    return ("**Redis per gateway request** (`INFO cpu` and `INFO commandstats` before and after each saturation "
            "repeat, over the requests wrk counted; calls sent = scripts the gateway ran; commands = those "
            "plus every command run inside them)\n\n"
            + _table(["phase", "Redis CPU us", "in scripts us", "calls sent", "commands", "by command (calls, us)"],
                     rows))


def targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of the issue's targets; met is None when not measured."""
    s = results["settings"]
    out: list[tuple[str, str, bool | None]] = []
    rate = s["rate"]
    for shape in ("paced", f"bursts of {s['burst']}"):
        a50 = added(results, "gateway", shape, rate, "p50_ms")
        a99 = added(results, "gateway", shape, rate, "p99_ms")
        out.append((f"added p50 <= {TARGET_ADDED_P50_MS:g} ms at {rate:g} req/s ({shape})", f"{a50:+.2f} ms",
                    None if math.isnan(a50) else a50 <= TARGET_ADDED_P50_MS))
        out.append((f"added p99 <= {TARGET_ADDED_P99_MS:g} ms at {rate:g} req/s ({shape})", f"{a99:+.2f} ms",
                    None if math.isnan(a99) else a99 <= TARGET_ADDED_P99_MS))
    low, high = TARGET_PACED_RATES
    for field, limit in (("p50_ms", TARGET_ADDED_P50_MS), ("p99_ms", TARGET_ADDED_P99_MS)):
        paced = {r: a for r, a in paced_added(results, "gateway", field).items() if low <= r <= high}
        if paced:
            worst = max(paced, key=lambda r: paced[r])
            out.append((f"added {field[:3]} <= {limit:g} ms at every paced rate {low:g}-{high:g} req/s",
                        f"worst {paced[worst]:+.2f} ms at {worst:g} req/s", paced[worst] <= limit))
    ratios = vs_bare(results)
    if ratios:
        out.append((f"saturation >= {TARGET_VS_BARE:.0%} of the bare proxy's, same run",
                    f"{median(ratios):.0%} (median of {len(ratios)})", median(ratios) >= TARGET_VS_BARE))
    sat = saturation_rps(results, "gateway")
    out.append((f"saturation >= {TARGET_SATURATION_RPS:,.0f} req/s ({s['workers']} workers)", f"{sat:,.0f} req/s",
                None if math.isnan(sat) else sat >= TARGET_SATURATION_RPS))
    litellm = saturation_rps(results, "litellm")
    ratio = sat / litellm if litellm and not math.isnan(litellm) else math.nan
    per_core = per_core_rps(results, "gateway") / per_core_rps(results, "litellm") if not math.isnan(ratio) \
        else math.nan
    out.append((f">= {TARGET_VS_LITELLM:g}x LiteLLM's throughput, same workers", "not compared" if math.isnan(ratio)
                else f"{ratio:.1f}x ({litellm:,.0f} req/s); per server core {per_core:.1f}x",
                None if math.isnan(ratio) else ratio >= TARGET_VS_LITELLM))
    streams = results["streams"]
    if "gateway" in streams and "direct" in streams:
        a = streams["gateway"]["ttfb_p50_ms"] - streams["direct"]["ttfb_p50_ms"]
        out.append((f"streaming TTFB added p50 <= {TARGET_TTFB_ADDED_P50_MS:g} ms", f"{a:+.2f} ms",
                    a <= TARGET_TTFB_ADDED_P50_MS))
    hold = results.get("hold")
    if hold:
        x = hold["extra"]
        n = s["hold_streams"]
        out.append((f"{TARGET_HOLD_STREAMS:,} concurrent streams on one worker, no error",
                    f"{n:,} streams, {x['open_when_measured']:,} open at once, {hold['errors']} errors",
                    hold["errors"] == 0 and x["open_when_measured"] >= n >= TARGET_HOLD_STREAMS))
        out.append((f"< {TARGET_BYTES_PER_STREAM // 1024} KB of memory per stream",
                    f"{x['per_stream_bytes'] / 1024:.1f} KiB", x["per_stream_bytes"] < TARGET_BYTES_PER_STREAM))
    soak = results.get("soak")
    if soak:
        reached = soak["end_requests"] >= s["soak_requests"]
        out.append(((f"RSS after {s['soak_requests']:,} requests within {TARGET_GROWTH:.0%} of after "
                     f"{s['soak_checkpoint']:,}"), f"{soak['growth']:+.1%}" + ("" if reached else
                    f" (only {soak['end_requests']:,} requests)"), soak["growth"] <= TARGET_GROWTH if reached
                    else None))
    return out


def targets_table(results: dict) -> str:
    rows = [[t, m, "not measured" if ok is None else "met" if ok else "MISSED"] for t, m, ok in targets(results)]
    return "**Targets**\n\n" + _table(["target", "measured", ""], rows)

