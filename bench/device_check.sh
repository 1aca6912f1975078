#!/usr/bin/env bash
# The GPU side of issue 14, in one run on a machine with an NVIDIA GPU (target: under 8 minutes):
#   1. real CUDA QLoRA (bitsandbytes 4-bit) of the tiny model through the agent, bf16 compute;
#   2. served evaluation on vLLM (one `swift deploy --infer_backend vllm`, base + adapter) vs the native path, with
#      per-question agreement (bench/eval_paths.py's figures) — skipped loudly if vLLM is not installed;
#   3. training with 1 and N GPUs (N = all visible GPUs, at most 8; N = 1 on a one-GPU machine is reported as such).
# Every step prints PASS/FAIL/SKIP with its reason; the script exits non-zero if any step failed, and lists skips
# at the end, so nothing is skipped silently.
#
#   bash bench/device_check.sh [WORK_DIR]        # run from the repository root, with the project's venv
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d /tmp/tunebot-device-XXXXXX)}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
CACHE="$WORK/cache"
mkdir -p "$WORK" "$CACHE"
T0=$(date +%s)
declare -a RESULTS SKIPS
FAILED=0

note() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - T0 ))"; }
pass() { RESULTS+=("PASS $1"); echo "PASS $1"; }
fail() { RESULTS+=("FAIL $1"); echo "FAIL $1"; FAILED=1; }
skip() { RESULTS+=("SKIP $1"); SKIPS+=("$1"); echo "SKIP $1"; }

note "machine"
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "no nvidia-smi: this script needs an NVIDIA GPU"; exit 2
fi
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
NGPU=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
"$PY" - <<'EOF' || { echo "torch cannot use CUDA"; exit 2; }
import torch, sys
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count())
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
"$PY" -c "import swift, evalscope, bitsandbytes; print('ms-swift', swift.__version__, 'evalscope', evalscope.__version__, 'bitsandbytes', bitsandbytes.__version__)"
HAVE_VLLM=0
if "$PY" -c "import vllm; print('vllm', vllm.__version__)" 2>/dev/null; then HAVE_VLLM=1; fi

# One job file per step, written by Python from the shipped example (the tiny model builds itself: no download).
mkjob() {  # mkjob NAME KIND EXTRA_JSON
  "$PY" - "$REPO" "$WORK/$1.json" "$1" "$2" "$3" <<'EOF'
import json, sys
repo, path, run_id, kind, extra = sys.argv[1:]
job = json.load(open(f"{repo}/configs/examples/tiny-train-eval.json"))
job.update({"run_id": run_id, "kind": kind})
extra = json.loads(extra)
job["hyper"].update(extra.pop("hyper", {}))
job.update(extra)
if kind == "eval":
    job.update({"tuner": None, "datasets": []})
if kind == "train":
    job["benchmarks"] = []
json.dump(job, open(path, "w"))
EOF
}
agent() {  # agent NAME [flags...] -> runs the agent, output in $WORK/out-NAME
  local name=$1; shift
  (cd "$REPO" && timeout 420 "$PY" -m tunebot agent run --job "$WORK/$name.json" --out "$WORK/out-$name" \
     --cache "$CACHE" --bench-data "$REPO/configs/benchmarks/data" --offline --quiet "$@") \
     >"$WORK/$name.log" 2>&1
}
field() { "$PY" -c "import json,sys; r=json.load(open('$WORK/out-$1/results.json')); print(eval(sys.argv[1], {}, {'r': r}))" "$2"; }

BENCH='[{"name":"ceval","subsets":["computer_network","logic"],"limit":25,"few_shot":0,"max_tokens":8},{"name":"cmmlu","subsets":["agronomy","anatomy"],"limit":25,"few_shot":0,"max_tokens":8}]'

note "1. CUDA QLoRA (bitsandbytes nf4, bf16 compute) + LoRA adapter for the eval steps"
mkjob qlora train '{"tuner":"qlora","hyper":{"max_steps":120,"save_steps":120,"torch_dtype":"bfloat16","per_device_train_batch_size":8}}'
if agent qlora && grep -q "Linear4bit" "$WORK/out-qlora/logs/swift-sft.log"; then
  pass "cuda qlora: $(field qlora 'r["train"]["steps"]') steps, train_runtime $(field qlora 'r["train"]["train_runtime_s"]') s, loss $(field qlora 'round(r["train"]["first_loss"],3)') -> $(field qlora 'round(r["train"]["final_loss"],3)'), hardware $(field qlora 'r["manifest"]["hardware"]')"
else
  fail "cuda qlora (see $WORK/qlora.log and $WORK/out-qlora/logs/swift-sft.log)"; tail -20 "$WORK/qlora.log"
fi
mkjob lora train '{"hyper":{"max_steps":120,"save_steps":120,"torch_dtype":"bfloat16"}}'
agent lora || { fail "cuda lora for the eval steps"; tail -20 "$WORK/lora.log"; }

note "2. served evaluation (vLLM) vs native, base + adapter in one server"
if [ ! -f "$WORK/out-lora/adapter/adapter_config.json" ]; then
  fail "served eval: no adapter from step 1"
elif [ "$HAVE_VLLM" = 0 ]; then
  skip "vLLM served eval: vllm is not installed in $PY (pip install vllm matching torch)"
else
  mkjob native eval "{\"benchmarks\":$BENCH,\"adapter\":{\"run_id\":\"lora\",\"path\":\"$WORK/out-lora\"},\"hyper\":{\"torch_dtype\":\"bfloat16\"}}"
  mkjob native_base eval "{\"benchmarks\":$BENCH,\"hyper\":{\"torch_dtype\":\"bfloat16\"}}"
  mkjob served eval "{\"benchmarks\":$BENCH,\"adapter\":{\"run_id\":\"lora\",\"path\":\"$WORK/out-lora\"},\"eval_backend\":\"served\",\"eval_base\":true,\"hyper\":{\"torch_dtype\":\"bfloat16\"}}"
  ok=1
  s0=$(date +%s); agent native || ok=0; agent native_base || ok=0; s1=$(date +%s); agent served || ok=0; s2=$(date +%s)
  if [ $ok = 1 ] && [ "$(field served 'r["manifest"]["eval_backend"]')" = "served-vllm" ]; then
    "$PY" - "$WORK" "$((s1 - s0))" "$((s2 - s1))" <<'EOF'
import json, sys
from pathlib import Path
work, native_wall, served_wall = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
def preds(out, folder="eval"):
    d = {}
    for p in sorted((work / out / folder / "reviews").glob("*.jsonl")):
        for line in p.read_text().splitlines():
            r = json.loads(line); d[f"{p.stem}#{r['index']}"] = r["sample_score"]["score"].get("prediction")
    return d
res = lambda o: json.load(open(work / o / "results.json"))
a, b = preds("out-native"), preds("out-served")
base_a, base_b = preds("out-native_base"), preds("out-served", "eval-base")
n = len(a); agree = sum(a[k] == b.get(k) for k in a); agree_base = sum(base_a[k] == base_b.get(k) for k in base_a)
ne, se = res("out-native")["manifest"]["eval_wall_s"], res("out-served")["manifest"]["eval_wall_s"]
print(f"questions per model: {n}; adapter answers differ from base on {sum(b[k] != base_b.get(k) for k in b)}/{n}")
print(f"native adapter eval {ne:.1f} s ({n/ne:.1f} q/s); served (vLLM, base + adapter) EvalScope {se:.1f} s "
      f"({2*n/se:.1f} q/s), server start {res('out-served')['manifest']['eval_server_start_s']:.1f} s")
print(f"per-question agreement served vs native: adapter {agree}/{n} = {100*agree/n:.1f} %, "
      f"base {agree_base}/{n} = {100*agree_base/n:.1f} % (target >= 99 %)")
for k in sorted(a):
    if a[k] != b.get(k): print(f"  disagreement {k}: native {a[k]!r} served {b.get(k)!r}")
print(f"/compare wall: two native runs {native_wall:.0f} s vs one served run {served_wall:.0f} s "
      f"(ratio {native_wall/max(served_wall,1):.2f})")
EOF
    pass "vLLM served eval (figures above)"
  else
    fail "vLLM served eval: backend $(field served 'r["manifest"].get("eval_backend")' 2>/dev/null) (see $WORK/served.log, $WORK/out-served/logs/swift-deploy.log)"
    tail -30 "$WORK/out-served/logs/swift-deploy.log" 2>/dev/null
  fi
fi

note "3. training with 1 and N GPUs"
N=$(( NGPU >= 8 ? 8 : NGPU >= 4 ? 4 : NGPU >= 2 ? 2 : 1 ))
declare -A RATE
for g in 1 $N; do
  [ -n "${RATE[$g]:-}" ] && continue
  mkjob "ddp$g" train "{\"resources\":{\"gpus\":$g,\"nodes\":1},\"hyper\":{\"max_steps\":200,\"save_steps\":200,\"torch_dtype\":\"bfloat16\",\"per_device_train_batch_size\":8,\"max_length\":512}}"
  if agent "ddp$g"; then
    RATE[$g]=$(field "ddp$g" "round(200*8*$g/r['train']['train_runtime_s'],1)")
    echo "$g GPU(s): ${RATE[$g]} samples/s (train_runtime $(field "ddp$g" 'r["train"]["train_runtime_s"]') s, world_size $(grep -o 'world_size: [0-9]*' "$WORK/out-ddp$g/logs/swift-sft.log" | head -1))"
  else
    fail "training on $g GPU(s) (see $WORK/ddp$g.log)"; tail -20 "$WORK/ddp$g.log"
  fi
done
if [ "$N" = 1 ]; then
  skip "N-GPU training: this machine has one GPU (1-GPU figure above only)"
elif [ -n "${RATE[1]:-}" ] && [ -n "${RATE[$N]:-}" ]; then
  pass "1 vs $N GPUs: speed-up $("$PY" -c "print(round(${RATE[$N]}/${RATE[1]},2))")x, efficiency $("$PY" -c "print(round(100*${RATE[$N]}/($N*${RATE[1]})))") %"
fi

note "summary"
printf '%s\n' "${RESULTS[@]}"
[ ${#SKIPS[@]} -gt 0 ] && printf 'skipped (%d): %s\n' "${#SKIPS[@]}" "$(IFS='; '; echo "${SKIPS[*]}")"
echo "total $(( $(date +%s) - T0 )) s; outputs in $WORK"
exit $FAILED
