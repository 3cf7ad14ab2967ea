#!/usr/bin/env bash
# The full-data preset (params-full.yaml) as one DVC experiment. Real data from Kaggle by default;
# FER_MIRROR=<folder> takes the same files from a local mirror instead. On a GPU: KERAS_BACKEND=jax (benchmarks/results/gpu_h200.md).
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
if [ -n "${FER_MIRROR:-}" ]; then
  extra=(-S data.source=mirror -S "data.mirror=${FER_MIRROR}")
fi
# shellcheck disable=SC2046  # one word per -S argument is what the preset prints
dvc exp run --name "full-$(date +%Y%m%d-%H%M)" $(python -m pipeline.preset params-full.yaml) "${extra[@]}"
