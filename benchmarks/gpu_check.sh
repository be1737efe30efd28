#!/usr/bin/env bash
# One GPU, under 8 minutes: the speed benchmark's GPU rows and the scale benchmark's streams feeding ResNet-50.
#
#   benchmarks/gpu_check.sh [--dry_run] [--output=benchmarks/results/gpu_check.json] [--tree=DIR]
#
# Writes one JSON file (atomically) with:
#   speed_resnet14   benchmarks/speed.py on MNIST-5k (28x28), ResNet-14, batch 256: CE / Pi / TE trainers, tensor-
#                    and pipeline-fed, one row per float32 | mixed_float16 x XLA on | off on /GPU:0
#   speed_resnet50   the same for ResNet-50 on a generated Clothing1M tree at 224x224 (configs/clothing1m.py)
#   scale            benchmarks/scale.py at 100k list entries, batch 256: Stage-1 / Stage-2 streams vs the bare
#                    decode limit, and ResNet-50 trained on the Stage-1 stream vs on a batch in memory
#                    (feed_model.input_bound: the share of step time the GPU waits on input)
# Each part runs under its own time limit; a part that fails or runs out of time is recorded with its exit
# status and the tail of its log instead of stopping the others. Without a GPU it refuses to run (exit 2)
# unless --dry_run: then tiny sizes on the CPU (the MLP on MNIST-5k, a 120-file tree, 300 entries), which the
# test suite runs. Set PYTHON to choose the interpreter (default: python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
DRY_RUN=0
OUTPUT="$ROOT/benchmarks/results/gpu_check.json"
TREE="${TMPDIR:-/tmp}/gpu_check_tree"
for arg in "$@"; do
  case "$arg" in
    --dry_run) DRY_RUN=1 ;;
    --output=*) OUTPUT="${arg#--output=}" ;;
    --tree=*) TREE="${arg#--tree=}" ;;
    *) echo "gpu_check.sh: unknown argument '$arg'; allowed: --dry_run, --output=FILE, --tree=DIR" >&2; exit 2 ;;
  esac
done
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2

GPU_NAME="$("$PYTHON" -c 'import tensorflow as tf; g = tf.config.list_physical_devices("GPU"); print(tf.config.experimental.get_device_details(g[0]).get("device_name", g[0].name) if g else "")' 2>/dev/null | tail -1)"
if [[ -z "$GPU_NAME" && "$DRY_RUN" == 0 ]]; then
  echo "gpu_check.sh: no GPU is visible to TensorFlow; run it on a GPU machine, or with --dry_run on the CPU" >&2
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)

# run_part NAME LIMIT_SECONDS COMMAND...: runs COMMAND (which writes $WORK/NAME.json) under a time limit.
run_part() {
  local name="$1" limit="$2"; shift 2
  local begin=$(date +%s) status=0
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1 || status=$?
  echo "{\"exit_status\": $status, \"seconds\": $(( $(date +%s) - begin )), \"limit_seconds\": $limit}" \
    >"$WORK/$name.status.json"
  echo "gpu_check.sh: $name exit $status after $(( $(date +%s) - begin )) s" >&2
}

if [[ "$DRY_RUN" == 1 ]]; then
  SPEED_COMMON=(--batch_size=8 --steps=1 --warmup=1 --repeats=1 --tensor_batches=1 --nomerge
                --rows=cpu:float32:nojit,cpu:mixed_float16:jit)
  run_part speed_resnet14 600 "$PYTHON" "$ROOT/benchmarks/speed.py" "${SPEED_COMMON[@]}" --models=mlp \
    --output="$WORK/speed_resnet14.json"
  run_part scale 600 "$PYTHON" "$ROOT/benchmarks/scale.py" --dry_run --feed_model=resnet14 \
    --output="$WORK/scale.json"
else
  GPU_ROWS=gpu:float32:nojit,gpu:float32:jit,gpu:mixed_float16:nojit,gpu:mixed_float16:jit
  SPEED_COMMON=(--batch_size=256 --steps=10 --warmup=3 --repeats=2 --tensor_batches=4 --nomerge --rows="$GPU_ROWS")
  # 2,000 distinct 256x256 JPEGs (about 40 s to draw), repeated to 100k entries by scale.py.
  run_part tree 120 "$PYTHON" "$ROOT/benchmarks/make_release_tree.py" --out_dir="$TREE" --num_files=2000 \
    --num_train=1500 --num_clean_train=200 --num_val=100 --num_test=100 --keep_existing_images
  run_part speed_resnet14 150 "$PYTHON" "$ROOT/benchmarks/speed.py" "${SPEED_COMMON[@]}" --models=resnet14 \
    --output="$WORK/speed_resnet14.json"
  run_part speed_resnet50 180 "$PYTHON" "$ROOT/benchmarks/speed.py" "${SPEED_COMMON[@]}" --models=resnet50 \
    --config="$ROOT/configs/clothing1m.py" --config.data.dir="$TREE" --output="$WORK/speed_resnet50.json"
  run_part scale 150 "$PYTHON" "$ROOT/benchmarks/scale.py" --tree="$TREE" --num_files=2000 --sizes=100000 \
    --batch_size=256 --steps=20 --repeats=2 --feed_model=resnet50 --feed_steps=20 --output="$WORK/scale.json"
fi

"$PYTHON" - "$WORK" "$OUTPUT" "$DRY_RUN" "$GPU_NAME" "$START" "$*" <<'PY'
import glob, json, os, sys, time
from tf_twostage.utils import io_utils
work, output, dry_run, gpu, start, args = sys.argv[1:]
report = {"dry_run": dry_run == "1", "gpu": gpu or None, "command": f"benchmarks/gpu_check.sh {args}".strip(),
          "date": time.strftime("%Y-%m-%d"), "parts": {}}
for status_path in sorted(glob.glob(os.path.join(work, "*.status.json"))):
    name = os.path.basename(status_path)[: -len(".status.json")]
    part = io_utils.read_json(status_path)
    result_path = os.path.join(work, f"{name}.json")
    if os.path.isfile(result_path):
        part["result"] = io_utils.read_json(result_path)
    if part["exit_status"] != 0 or "result" not in part and name != "tree":
        with open(os.path.join(work, f"{name}.log"), encoding="utf-8", errors="replace") as log:
            part["log_tail"] = log.read()[-2000:]
    report["parts"][name] = part
report["seconds"] = int(time.time()) - int(start)
report["all_passed"] = all(p["exit_status"] == 0 for p in report["parts"].values())
io_utils.write_json(output, report)
print(f"gpu_check.sh: wrote {output} in {report['seconds']} s; all parts passed: {report['all_passed']}")
sys.exit(0 if report["all_passed"] else 1)
PY
