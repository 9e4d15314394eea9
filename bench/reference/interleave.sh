#!/usr/bin/env bash
# Alternates bench/run.sh train-layer (ours) and the PyTorch reference, N pairs, in one time window (the machine is
# shared, so only side-by-side runs compare). Usage: bench/reference/interleave.sh [pairs=5] [extra args for both...]
set -euo pipefail
cd "$(dirname "$0")/../.."
pairs=${1:-5}; shift || true
bench/run.sh train-layer --steps 1 --warmup 1 "$@" >/dev/null   # build once
for i in $(seq "$pairs"); do
    dotnet bench/MMSharp.Bench/bin/Release/net10.0/mmsharp-bench.dll train-layer "$@"
    /usr/bin/python3 bench/reference/torch_train_layer.py "$@"
done
