#!/usr/bin/env bash
# Installs what the suite needs and runs all of it: the package with its test extras,
# Prometheus (Debian's package) and the CPU build of vLLM (cached outside the repository).
# A real component that cannot be had fails the run; nothing is skipped for its absence.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

if ! command -v prometheus >/dev/null 2>&1; then
    echo "installing prometheus (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
if ! command -v redis-server >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    echo "installing redis-server (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

# wrk, hey, nginx and matplotlib for the benchmark's smoke run (not LiteLLM: only --compare needs it).
bash bench/setup.sh

# The openai Node SDK for the client tests (cached outside the repository).
bash tests/clients/setup.sh

# The real vLLM server for the tests marked `vllm`; a second run reuses the cache.
bash scripts/vllm-env.sh

export GATEWAY_REQUIRE_REAL=1   # fixtures fail, never skip, when Redis/Prometheus/vLLM is missing
# Line coverage of gateway/ and providers/, gateway processes started by the tests included;
# the run fails below [tool.coverage.report] fail_under in pyproject.toml.
exec python3 -m pytest --cov --cov-report=term "$@"
