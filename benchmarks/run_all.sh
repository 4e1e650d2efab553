#!/usr/bin/env bash
# Every benchmark on this machine, in one go, with its JSON results in one folder.
#
#   bash benchmarks/run_all.sh                 # GPU when there is one (CUDA), else CPU
#   bash benchmarks/run_all.sh results/my_gpu  # choose the folder
#   python benchmarks/report.py results/my_gpu # the tables, as in benchmarks/README.md
#
# On a GPU it makes a 20,000-image synthetic release at 256 px (about 18% of ChestX-ray14;
# the rates do not depend on the dataset's size once the cache is built) and measures ResNet-50
# and DenseNet-121 + att1 at the paper's settings (224 px crops of the 256 px cache, batch 64,
# mixed precision). On a CPU it runs the small configurations. Set PYTHON to choose the
# interpreter, and CRAL_BENCH_WORKDIR for where the synthetic data go (default: /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
gpu=$($PYTHON -c "import torch; print(int(torch.cuda.is_available()))")
kind=$([ "$gpu" = 1 ] && echo gpu || echo cpu)
OUT=${1:-benchmarks/results/$kind-$(hostname)-$(date +%Y%m%d)}
WORK=${CRAL_BENCH_WORKDIR:-${TMPDIR:-/tmp}/cral-bench}
mkdir -p "$OUT" "$WORK"
echo "results -> $OUT; data -> $WORK"
$PYTHON -m cral_lib info | tee "$OUT/info.txt"

if [ "$gpu" = 1 ]; then
  $PYTHON benchmarks/loader.py --device cuda --images 2048 --json "$OUT/loader.json"
  $PYTHON benchmarks/model_step.py --device cuda --json "$OUT/model_step.json"
  $PYTHON benchmarks/end_to_end.py --device cuda --images 20000 --workdir "$WORK/end_to_end" \
      --json "$OUT/end_to_end.json"
  $PYTHON benchmarks/step_breakdown.py --device cuda --data "$WORK/end_to_end/synthetic-20000-256" \
      --backbone resnet50 --image-size 224 --cache-size 256 --batch-size 64 --trace "$OUT/profile" \
      --json "$OUT/step_breakdown.json"
  $PYTHON benchmarks/synthetic_auc.py --device cuda --workdir "$WORK/auc" --json "$OUT/synthetic_auc.json"
  $PYTHON benchmarks/attention_optimizer.py --device cuda --workdir "$WORK/auc" --json "$OUT/attention_optimizer.json"
else
  $PYTHON benchmarks/loader.py --images 1024 --json "$OUT/loader.json"
  $PYTHON benchmarks/model_step.py --device cpu --json "$OUT/model_step.json"
  $PYTHON benchmarks/end_to_end.py --device cpu --workdir "$WORK/end_to_end" --json "$OUT/end_to_end.json"
  $PYTHON benchmarks/step_breakdown.py --device cpu --trace "$OUT/profile" --json "$OUT/step_breakdown.json"
  $PYTHON benchmarks/fast_backbone.py --device cpu --json "$OUT/fast_backbone.json"
  $PYTHON benchmarks/synthetic_auc.py --device cpu --workdir "$WORK/auc" --json "$OUT/synthetic_auc.json"
  # six runs of the fast recipe: about 20 minutes on a 2-core CPU
  $PYTHON benchmarks/attention_optimizer.py --device cpu --workdir "$WORK/auc" --json "$OUT/attention_optimizer.json"
fi
$PYTHON benchmarks/report.py "$OUT" | tee "$OUT/report.md"
