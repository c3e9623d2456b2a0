#!/usr/bin/env bash
# The GPU check: one command, a few minutes, on a machine with one CUDA GPU.
#
#   bash benchmarks/gpu.sh            # writes benchmarks/gpu-results/gpu-<UTC time>.md and throughput-<time>.json
#   OUT=/some/dir bash benchmarks/gpu.sh   # ... into another folder (e.g. the folder a remote runner sends back)
#
#   SEEDS="0" FIT_TIMEOUT=120 THROUGHPUT_TIMEOUT=300 bash benchmarks/gpu.sh   # a short lease: one peer seed
#   ACCELERATOR=cpu bash benchmarks/gpu.sh   # part 1 on the CPU: checks the script itself where no GPU is
#
# 1. A one-GPU DDP fit in bf16-mixed with channels_last and GradCache, then `--resume` to more epochs: the
#    resumed run must be the same MLflow run, FINISHED, with its steps continuing.
# 2. benchmarks/throughput.py on CUDA: ours against lightly (when installed) on both nets, the step profile,
#    GradCache's memory (torch.cuda.max_memory_allocated) and gradients, and float32 / bf16-mixed /
#    channels_last / torch.compile with model TFLOP/s and MFU (model FLOPs from torch.utils.flop_counter over
#    the step's time and the chip's dense peak, benchmarks/flops.py).
# Each part has its own time limit, and a failed part is reported without stopping the other; the correctness
# check comes first, so a lease that ends early still says whether the GPU path works.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-$REPO/benchmarks/gpu-results}
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%d-%H%M)
SEEDS=${SEEDS:-0 1 2}
FIT_TIMEOUT=${FIT_TIMEOUT:-180}
THROUGHPUT_TIMEOUT=${THROUGHPUT_TIMEOUT:-420}
REPORT="$OUT/gpu-$STAMP.md"
status=0

{
  echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/GPU: /'
  "$PY" -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, device {torch.cuda.get_device_name() if torch.cuda.is_available() else None}')"
  echo
} | tee "$REPORT"

echo -e "## 1. One-GPU DDP fit and resume (bf16-mixed, channels_last, GradCache chunks of 64)\n" | tee -a "$REPORT"
WORK=$(mktemp -d)
FIT=(-m contrastlab fit -c "$REPO/configs/simclr/digits.yaml" --trainer.accelerator "${ACCELERATOR:-gpu}" --trainer.devices 1
     --trainer.strategy ddp --trainer.precision bf16-mixed --model.init_args.channels_last true
     --model.init_args.grad_cache_chunk 64 --trainer.check_val_every_n_epoch 1 --tracking.system_metrics_interval 1)
start=$(date +%s)
if (cd "$WORK" && timeout "$FIT_TIMEOUT" "$PY" "${FIT[@]}" --trainer.max_epochs 2 > first.log 2>&1) &&
   (cd "$WORK" && timeout "$FIT_TIMEOUT" "$PY" "${FIT[@]}" --trainer.max_epochs 4 --resume > resumed.log 2>&1); then
  (cd "$WORK" && "$PY" - <<'EOF') | tee -a "$REPORT" || status=1
import mlflow

client = mlflow.MlflowClient("sqlite:///mlruns/mlflow.db")
runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
assert len(runs) == 1, f"expected the resumed run to continue the first one, found {len(runs)} runs"
run = runs[0]
steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss_step")]
assert run.info.status == "FINISHED", run.info.status
assert len(steps) == len(set(steps)), "duplicated steps after the resume"
print(f"one run {run.info.run_id}, FINISHED, train/loss logged at steps {min(steps)}..{max(steps)} "
      f"without duplicates, test/knn_top1 {run.data.metrics.get('test/knn_top1', float('nan')):.3f}, "
      f"GPU utilisation samples: {len(client.get_metric_history(run.info.run_id, 'system/gpu_0_utilization_percentage'))}")
EOF
  echo "fit + resume: $(( $(date +%s) - start )) s" | tee -a "$REPORT"
else
  echo "DDP fit or resume failed: logs in $OUT" | tee -a "$REPORT"
  tail -20 "$WORK"/*.log | tee -a "$REPORT"
  status=1
fi
for log in "$WORK"/*.log; do cp "$log" "$OUT/fit-$(basename "$log" .log)-$STAMP.log"; done

echo -e "\n## 2. Throughput on CUDA\n" | tee -a "$REPORT"
if ! timeout "$THROUGHPUT_TIMEOUT" "$PY" benchmarks/throughput.py --device cuda --quick --nets small_cnn resnet18 \
    --resnet-epochs 1 --seeds $SEEDS --precision-nets small_cnn resnet18 --profile-nets small_cnn resnet18 \
    --json "$OUT/throughput-$STAMP.json" 2> "$OUT/throughput-$STAMP.log" | tee -a "$REPORT"; then
  echo "throughput.py failed or ran out of time: see $OUT/throughput-$STAMP.log" | tee -a "$REPORT"
  tail -20 "$OUT/throughput-$STAMP.log" | tee -a "$REPORT"
  status=1
fi

echo -e "\nWritten: $REPORT" | tee -a "$REPORT"
exit $status
