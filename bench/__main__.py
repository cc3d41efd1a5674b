"""`python -m bench run | report | profile | ab`: the benchmark's command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from bench.stack import MissingTool

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the gateway against going direct.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start everything, measure every path, print the tables")
    run.add_argument("--smoke", action="store_true", help="a short run that checks the harness works (~20 s)")
    run.add_argument("--compare", action="store_true", help="also measure LiteLLM's proxy (bench/setup.sh --litellm)")
    run.add_argument("--workers", type=int, help="gateway (and LiteLLM) workers")
    run.add_argument("--repeat", type=int, help="repeats of saturation and fixed-rate phases")
    run.add_argument("--upstream", choices=("nginx", "python"), help="server of non-streaming answers")
    run.add_argument("--hold-streams", type=int, help="streams held at once by one worker")
    run.add_argument("--soak-requests", type=int, help="requests of the memory-growth soak")
    run.add_argument("--out", type=Path, help="directory for logs, results.json, report.md, latency.png")
    run.add_argument("--publish", action="store_true", help="write bench/RESULTS.md and latency.png from this run")

    publish = commands.add_parser("publish", help="write bench/RESULTS.md from one run's directory")
    publish.add_argument("run_dir", type=Path)

    report = commands.add_parser("report", help="print the tables of a results.json again")
    report.add_argument("results", type=Path)

    profile = commands.add_parser("profile", help="sample gateway workers with py-spy under saturation")
    profile.add_argument("--workers", type=int, default=2)
    profile.add_argument("--seconds", type=float, default=20.0)
    profile.add_argument("--connections", type=int, default=64)
    profile.add_argument("--upstream", choices=("nginx", "python"), default="nginx")
    profile.add_argument("--source", type=Path, help="directory holding the gateway package (default: this checkout)")
    profile.add_argument("--out", type=Path)

    ab = commands.add_parser("ab", help="compare two source trees of the gateway, in alternating rounds")
    ab.add_argument("a", type=Path, help="directory holding the gateway package of side A")
    ab.add_argument("b", type=Path, help="directory holding the gateway package of side B")
    ab.add_argument("--workers", type=int, default=2)
    ab.add_argument("--rounds", type=int, default=4)
    ab.add_argument("--seconds", type=float, default=8.0)
    ab.add_argument("--connections", type=int, default=64)
    ab.add_argument("--rate", type=float, default=500.0)
    ab.add_argument("--upstream", choices=("nginx", "python"), default="nginx")
    ab.add_argument("--streams", type=float, default=0.0, help="also streams started a second (0: none)")
    ab.add_argument("--out", type=Path)

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "publish":
            from bench.publish import publish

            print(f"wrote {publish(args.run_dir)}")
            return 0
        if args.command == "report":
            from bench.report import render

            print(render(json.loads(args.results.read_text())))
            return 0
        if args.command == "ab":
            from bench.ab import compare

            print(compare(_out_dir(args.out, "ab"), args.a, args.b, workers=args.workers, rounds=args.rounds,
                          seconds=args.seconds, connections=args.connections, rate=args.rate,
                          upstream=args.upstream, streams=args.streams))
            return 0
        return _profile(args)
    except MissingTool as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2


def _out_dir(given: Path | None, kind: str) -> Path:
    return given or RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def _run(args: argparse.Namespace) -> int:
    from bench.plot import plot
    from bench.report import render, targets
    from bench.run import SMOKE, Run, Settings

    settings = SMOKE if args.smoke else Settings()
    overrides = {"compare": args.compare, "workers": args.workers, "repeat": args.repeat, "upstream": args.upstream,
                 "hold_streams": args.hold_streams, "soak_requests": args.soak_requests}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v not in (None, False)})
    directory = _out_dir(args.out, "smoke" if args.smoke else "run")
    results = Run(settings, directory).execute().to_json()
    (directory / "results.json").write_text(json.dumps(results, indent=1))
    png = plot(results, directory / "latency.png")
    text = render(results)
    (directory / "report.md").write_text(text)
    print(text)
    print(f"results: {directory / 'results.json'}\nplot: {png}\nrun took {results['seconds']:.0f} s")
    if args.publish:
        from bench.publish import publish

        print(f"wrote {publish(directory)}")
    missed = [t for t, _, ok in targets(results) if ok is False]
    if missed and not args.smoke:
        print("targets missed: " + "; ".join(missed))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from bench.profile import profile

    directory = _out_dir(args.out, "profile")
    kwargs = {"source": args.source} if args.source else {}
    print(profile(directory, workers=args.workers, seconds=args.seconds, connections=args.connections,
                  upstream=args.upstream, **kwargs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
