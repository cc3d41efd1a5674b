#!/usr/bin/env bash
# The benchmark in one command: install what it needs (bench/setup.sh), then run it.
#   bash bench/run.sh              direct to the upstream, and through the gateway
#   bash bench/run.sh --compare    ... and through LiteLLM's proxy (installed once under ~/.cache)
# Every other option goes to `python3 -m bench run` (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
setup=()
for arg in "$@"; do
    if [[ $arg == --compare ]]; then setup+=(--litellm); fi
done
bash bench/setup.sh "${setup[@]}"
exec python3 -m bench run "$@"
