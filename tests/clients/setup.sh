#!/usr/bin/env bash
# The openai Node SDK, for the tests that drive the gateway as a Node client does.
# Kept outside the repository (like the vLLM environment) and reused by later runs.
set -euo pipefail
dir="${GATEWAY_CLIENTS_DIR:-$HOME/.cache/gateway-clients}"
if [ ! -f "$dir/node_modules/openai/package.json" ]; then
    command -v npm >/dev/null 2>&1 || { echo "npm is needed for the Node client tests" >&2; exit 1; }
    mkdir -p "$dir"
    # 6.x: the newest line that still runs on Node 20.
    npm install --prefix "$dir" 'openai@6' --no-package-lock --no-audit --no-fund --loglevel=error
fi
