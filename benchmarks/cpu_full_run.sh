#!/usr/bin/env bash
# The reduced-budget real-data run we can afford without a GPU: one small CNN on the full FER2013
# (7 classes, official Training / PublicTest / PrivateTest splits), as a DVC experiment in a temporary
# workspace so the main one stays usable. Results: `dvc exp show`, and benchmarks/results/.
#   MODEL=riv_base EPOCHS=10 bash benchmarks/cpu_full_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mirror=${FER_MIRROR:-$(cd ../shared/datasets && pwd)}
model=${MODEL:-riv_base}
epochs=${EPOCHS:-10}
dvc exp run --temp --name "cpu-full-${model}-${epochs}ep" \
  -S data.dataset=fer2013 -S data.source=mirror -S "data.mirror=${mirror}" -S data.classes=fer7 \
  -S relabel.scheme=none -S balance.method=none \
  -S "train.epochs=${epochs}" -S train.batch_size=64 -S train.lr=0.001 -S train.optimizer=adam \
  -S train.schedule=cosine -S train.label_smoothing=0.1 -S evaluate.tta=flip_shift \
  "evaluate@${model}"
