"""What reading a vLLM server's /metrics costs the gateway's event loop, per scrape.

    python -m bench.scrape [--repeat 500]

`bench/data/vllm-metrics.txt` is the page of a real vLLM server (the CPU build, tiny
model) scraped under load: about 50 KB, mostly histograms. A scrape is parsed on the
event loop of every worker, every `routing.metrics_poll_s`, for every pool member, so
its cost is latency added to whatever request is waiting behind it.
"""

from __future__ import annotations

import argparse
import timeit
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.routing.signals import parse_load

PAGE = Path(__file__).resolve().parent / "data" / "vllm-metrics.txt"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape")
    parser.add_argument("--repeat", type=int, default=500)
    args = parser.parse_args()
    text = PAGE.read_text()
    whole = timeit.timeit(lambda: list(text_string_to_metric_families(text)), number=args.repeat) / args.repeat
    ours = timeit.timeit(lambda: parse_load(text), number=args.repeat) / args.repeat
    print(f"page: {len(text):,} bytes, {len(text.splitlines())} lines; gauges read: {parse_load(text)}")
    print(f"prometheus_client parser over the whole page: {whole * 1000:.3f} ms per scrape")
    print(f"parse_load (the parser over the load gauges' lines only): {ours * 1000:.3f} ms per scrape")


if __name__ == "__main__":
    main()
