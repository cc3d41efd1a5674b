#!/usr/bin/env bash
# Installs everything the benchmark uses, and nothing at run time does:
#   Debian packages  wrk (saturation), hey (fixed rate), redis-server, nginx-light (fast upstream)
#   Python           this package with its `bench` extra (matplotlib, py-spy)
#   --litellm        LiteLLM's proxy in its own virtual environment under ~/.cache, for --compare
# Safe to run again: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

LITELLM_VERSION="${BENCH_LITELLM_VERSION:-1.106.2}"
LITELLM_VENV="${BENCH_LITELLM_VENV:-$HOME/.cache/llm-gateway-bench/litellm-$LITELLM_VERSION}"

with_litellm=0
for arg in "$@"; do
    case "$arg" in
        --litellm) with_litellm=1 ;;
        *) echo "usage: bash bench/setup.sh [--litellm]" >&2; exit 2 ;;
    esac
done

missing=()
for pair in wrk:wrk hey:hey redis-server:redis-server nginx:nginx-light; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [[ -x "/usr/sbin/${pair%%:*}" ]] || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    echo "bench setup: installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[bench]'

if ((with_litellm)) && [[ ! -x "$LITELLM_VENV/bin/litellm" ]]; then
    echo "bench setup: installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV (large; once)"
    python3 -m venv "$LITELLM_VENV"
    "$LITELLM_VENV/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
fi
echo "bench setup: ready"
