#!/usr/bin/env bash
# The GPU check, end to end, in one run (under 8 minutes): what vidjudge does on the GPU machine we can
# measure on (DESIGN.md 5: no network, no vLLM / TensorRT / onnxruntime-gpu; torch 2.11 + CUDA,
# transformers 5.17; wheels from .whl/, see wheels.sh).
#
#   here:   bash benchmarks/gpu/wheels.sh                       # once, fills .whl/ (45 MiB)
#   there:  bash benchmarks/gpu/check.sh                         # results under $OUT
#   CI:     bash benchmarks/gpu/check.sh --dry-run               # same steps on CPU, tiny bundle, seconds
#
# Steps (each time-boxed; a failed step is recorded and the next one still runs):
#   1 install   the wheels in .whl/ into /tmp/site (PYTHONPATH), when present
#   2 probe     torch/CUDA, the GPU and a bf16 matmul, NVDEC through PyAV (frames vs software), runtimes
#   3 tests     the tests marked `gpu` (torch encoder and transformers LLM on CUDA in bf16, vs CPU float32)
#   4 bundle    a Qwen2.5-VL-7B-shaped random bundle (SCALE of its layers at full width; 0.25 by default so
#               that the whole check fits; SCALE=1 for the full 7B when there is time)
#   5 stages    encoder (torch, CUDA bf16) and LLM prefill (transformers, CUDA bf16) per batch size
#   6 compare   the server on the GPU (torch encoder, transformers scorer, bf16) vs the naive reference
#               loop on the GPU, same videos, same run: videos/s and the ratio
# Output: $OUT/summary.json (every step's status and seconds), env.json, tests.xml, bundle.json,
# stages.json, compare.json, and each step's log.
set -uo pipefail
cd "$(dirname "$0")/../.."

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d)}
SCALE=${SCALE:-0.25}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
: > "$OUT/steps.tsv"

step() {  # step NAME LIMIT_S COMMAND...: run it with a time limit, log to $OUT/NAME.log, record status
  local name=$1 limit=$2 t0 rc
  shift 2
  echo "== $name (limit ${limit}s)"
  t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" | tee -a "$OUT/steps.tsv"
  tail -n 5 "$OUT/$name.log"
  return 0
}

if [ $DRY = 1 ]; then
  # CPU, the tiny bundle, a few seconds per measurement: proves the script, not the GPU.
  DEV=cpu; DT=float32; LIMIT=300; INTERVAL=2; BATCHES=1,2; LLM_BATCHES=1,2
else
  DEV=cuda; DT=bfloat16; LIMIT=150; INTERVAL=20; BATCHES=1,2,4,8,16; LLM_BATCHES=1,4,16,32
fi

# 1. Wheels the machine lacks (PyAV, pydantic, pydantic-settings, grpc health/reflection, vidjudge itself).
if [ $DRY = 0 ] && ls .whl/*.whl > /dev/null 2>&1; then
  step install 60 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# 2. What the machine offers.
step probe 60 $PY -m vidjudge.benchmarks.gpu_probe --out "$OUT/env.json"

# 3. The CUDA paths' tests (skipped where torch sees no GPU, as in the dry run).
step tests 120 $PY -m pytest -q -p no:cacheprovider -m gpu tests/integration/test_gpu.py \
  --junitxml "$OUT/tests.xml"

# 4. The bundle.
if [ $DRY = 1 ]; then
  step bundle 120 $PY -m vidjudge.cli export tiny "$WORK/bundle" --overwrite
else
  step bundle 240 $PY -m vidjudge.benchmarks.fullsize_bundle "$WORK/bundle" --preset 7b --scale "$SCALE" \
    --report "$OUT/bundle.json"
fi

# 5. Stage throughput on the device.
step stages "$LIMIT" $PY -m vidjudge.benchmarks.stages encoder llm --bundle "$WORK/bundle" --backends torch \
  --device "$DEV" --dtype "$DT" --batch-sizes "$BATCHES" --llm-batch-sizes "$LLM_BATCHES" \
  --min-time 1 --rounds 2 --out "$OUT/stages.json"

# 6. The server on the device vs the naive loop on the device.
step compare "$LIMIT" $PY -m vidjudge.benchmarks.compare --bundle "$WORK/bundle" \
  --naive-device "$DEV" --naive-dtype "$DT" --naive-interval "$INTERVAL" --measurement-interval "$INTERVAL" \
  --warmup 4 --set scorer.backend=transformers --set scorer.device="$DEV" --set scorer.dtype="$DT" \
  --set encoder.backend=torch --set encoder.device="$DEV" --set encoder.dtype="$DT" --out "$OUT/compare.json"

# Summary: every step's exit status and seconds, with the headline figures where they came out.
$PY - "$OUT" "$DRY" "$SCALE" <<'PYEOF'
import json, sys
from pathlib import Path
out, dry, scale = Path(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3])
steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, secs = line.split("\t")
    steps[name] = {"rc": int(rc), "seconds": int(secs), "ok": rc == "0", "timed_out": rc in ("124", "137")}
summary = {"dry_run": dry, "scale": scale, "steps": steps}
def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.is_file() else None
env, compare = load("env.json"), load("compare.json")
if env:
    summary["gpu"], summary["nvdec"] = env.get("gpu"), env.get("nvdec")
if compare:
    r = compare["results"]
    summary["compare"] = {k: r.get(k) for k in ("ratio_median", "server_videos_per_s_median",
                                                 "naive_videos_per_s_median")}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PYEOF
