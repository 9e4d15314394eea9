#!/usr/bin/env bash
# Benchmarks in Release. Usage:
#   bench/run.sh gemm [--dtype fp32|bf16w] [--m 256] [--k 896] [--n 4864] [--threads 2] [--path avx2]
#   bench/run.sh bandwidth [--threads 2]
#   bench/run.sh attention [--threads 1,2] [--t 1024] [--d 64]
#   bench/run.sh generate --preset internvl3-1b [--threads 2] [--hugepages 0] [--weights arena|mapped|mapped-cold|copied] [--profile 1]
#   bench/run.sh train-layer [--seq 512] [--threads 2] [--steps 10] [--recompute 0|1] [--profile 0|1]
#     its PyTorch reference: /usr/bin/python3 bench/reference/torch_train_layer.py [--seq 512] [--threads 2] [--steps 10]
# OpenBLAS (libopenblas-dev) is the reference of the gemm bench only; it is installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p | grep -q 'libopenblas\.so\.0'; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >/dev/null
fi
log=$(mktemp)
dotnet build bench/MMSharp.Bench -c Release -v q -nologo >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
rm -f "$log"
# OpenBLAS reads these when it loads; the bench sets its thread count per case with openblas_set_num_threads
export OPENBLAS_CORETYPE=SkylakeX
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"
exec dotnet bench/MMSharp.Bench/bin/Release/net10.0/mmsharp-bench.dll "$@"
