#!/usr/bin/env bash
# harmbench GPU check: one prepared run on a CUDA machine without network, at most ~8 minutes.
#
#   scripts/gpu-check.sh --fetch            # once, on a machine WITH network (fills .gpu-wheels/)
#   scripts/gpu-check.sh [--out DIR]        # on the GPU machine (its Python already has torch & co.)
#   scripts/gpu-check.sh --dry-run          # show the plan and check the inputs; runs nothing
#
# --fetch runs `pip download` for the small wheels the GPU machine's Python lacks (lpips, webdataset, braceexpand,
# pycocotools, pyyaml, pytest-timeout) into the git-ignored .gpu-wheels/ (for --python-version, default
# 3.11, manylinux x86_64) and copies the LPIPS AlexNet backbone file there
# (from $HARMBENCH_LPIPS_ALEX, $HARMBENCH_SHARED/lpips or ../shared/lpips).
#
# The run: installs those wheels and the project with --no-deps (no index), runs the CUDA tests
# (pytest -m cuda), `harmbench bench eval --device cuda` (GPU utilisation sampled by nvidia-smi),
# and a GPU `harmbench bench train --full` (full-size configs, AMP, peak memory), each step under its
# own time limit, then writes ONE JSON to $OUT/gpu-check.json (or --out DIR): environment, each
# step's exit status, duration and results. Exit status: 0 when every step passed.
set -u

usage() {
  sed -n "2,17p" "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --fetch               fill .gpu-wheels/ (needs network); nothing else
  --python-version V    Python version of the GPU machine for --fetch (default 3.11)
  --dry-run             print the plan, check the inputs, write the plan JSON; run nothing
  --out DIR             where gpu-check.json goes (default $OUT, else ./gpu-check-out)
  --wheels DIR          wheel folder (default .gpu-wheels)
  --no-install          use the checkout through PYTHONPATH; install nothing
  --train-steps N       timed steps per model in bench train (default 200)
  --train-models LIST   models for bench train (default hen-ctn,dovenet,bargainnet)
  --eval-models LIST    learned models for bench eval (default idih,issam)
  -h, --help            this text
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="$ROOT/.gpu-wheels"
OUTDIR="${OUT:-$ROOT/gpu-check-out}"
MODE=run
INSTALL=1
PYVER=3.11
TRAIN_STEPS=200
TRAIN_MODELS=hen-ctn,dovenet,bargainnet
EVAL_MODELS=idih,issam
PY="${PYTHON:-python3}"
WHEEL_PACKAGES=(lpips webdataset braceexpand pycocotools pyyaml pytest-timeout)
# seconds per step (install, tests, eval, train): 30 + 120 + 120 + 180 = 450 s < 8 minutes
T_INSTALL=30; T_TESTS=120; T_EVAL=120; T_TRAIN=180

while [ $# -gt 0 ]; do
  case "$1" in
    --fetch) MODE=fetch ;;
    --dry-run) MODE=dry ;;
    --no-install) INSTALL=0 ;;
    --python-version) PYVER="${2:?--python-version needs a value}"; shift ;;
    --out) OUTDIR="${2:?--out needs a directory}"; shift ;;
    --wheels) WHEELS="${2:?--wheels needs a directory}"; shift ;;
    --train-steps) TRAIN_STEPS="${2:?--train-steps needs a number}"; shift ;;
    --train-models) TRAIN_MODELS="${2:?--train-models needs a list}"; shift ;;
    --eval-models) EVAL_MODELS="${2?--eval-models needs a list}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$TRAIN_STEPS" in ''|*[!0-9]*) echo "gpu-check: --train-steps must be a positive integer, got '$TRAIN_STEPS'" >&2; exit 2 ;; esac

find_alexnet() {
  local c
  for c in "${HARMBENCH_LPIPS_ALEX:-}" "${HARMBENCH_SHARED:+$HARMBENCH_SHARED/lpips/alexnet_features.pth}" \
           "$ROOT/shared/lpips/alexnet_features.pth" "$ROOT/../shared/lpips/alexnet_features.pth" \
           "$ROOT/../../shared/lpips/alexnet_features.pth"; do
    if [ -n "$c" ] && [ -f "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}

if [ "$MODE" = fetch ]; then
  mkdir -p "$WHEELS"
  set -e
  "$PY" -m pip download --dest "$WHEELS" --no-deps --only-binary=:all: --python-version "$PYVER" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp "${WHEEL_PACKAGES[@]}"
  alex="$(find_alexnet)" || { echo "gpu-check: LPIPS backbone alexnet_features.pth not found (set HARMBENCH_LPIPS_ALEX)" >&2; exit 1; }
  cp "$alex" "$WHEELS/alexnet_features.pth"
  ls -l "$WHEELS"
  echo "gpu-check: wheels and LPIPS backbone in $WHEELS (carry this folder to the GPU machine)"
  exit 0
fi

mkdir -p "$OUTDIR"
LOGS="$OUTDIR/gpu-check-logs"
mkdir -p "$LOGS"
STEPS_JSON="$LOGS/steps.jsonl"
: > "$STEPS_JSON"
ALEX="$WHEELS/alexnet_features.pth"
[ -f "$ALEX" ] || ALEX="$(find_alexnet || true)"

CUDA_TEST_FILES=$(cd "$ROOT" && grep -l "pytest.mark.cuda" tests/test_*.py | tr '\n' ' ')

plan() {
  cat <<EOF
install: $PY -m pip install --no-index --no-deps $WHEELS/*.whl; $PY -m pip install --no-index --no-deps --no-build-isolation -e $ROOT   (limit ${T_INSTALL}s)
tests:   $PY -m pytest -q -m cuda $CUDA_TEST_FILES   (HARMBENCH_SHARED with lpips/alexnet_features.pth; limit ${T_TESTS}s)
eval:    $PY -m harmbench.cli bench eval --device cuda --models '$EVAL_MODELS' --lpips-weights ${ALEX:-<none>}   (nvidia-smi sampling; limit ${T_EVAL}s)
train:   $PY -m harmbench.cli bench train --device cuda --full --steps $TRAIN_STEPS --models $TRAIN_MODELS   (limit ${T_TRAIN}s)
result:  $OUTDIR/gpu-check.json
EOF
}

# step NAME LIMIT CMD... : runs CMD with a time limit, logs to $LOGS/NAME.log, appends one JSON line
step() {
  local name="$1" limit="$2"; shift 2
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  "$PY" - "$name" "$rc" "$t0" "$t1" "$LOGS/$name.log" >> "$STEPS_JSON" <<'PYEOF'
import json, sys
name, rc, t0, t1, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
text = open(log, errors="replace").read()
last = None
for line in reversed(text.strip().splitlines()):
    if line.startswith("{") and line.endswith("}"):
        try:
            last = json.loads(line)
            break
        except ValueError:
            pass
print(json.dumps({"step": name, "rc": rc, "timed_out": rc in (124, 137), "seconds": round(t1 - t0, 2),
                  "result": last, "log_tail": text[-3000:]}))
PYEOF
  echo "gpu-check: $name rc=$rc ($(( ${t1%.*} - ${t0%.*} )) s)"
  return $rc
}

if [ "$MODE" = dry ]; then
  plan
  missing=()
  shopt -s nocaseglob  # PyYAML-*.whl
  for p in "${WHEEL_PACKAGES[@]}"; do
    n="${p//-/_}"
    ls "$WHEELS"/"$n"-*.whl "$WHEELS"/"$p"-*.whl >/dev/null 2>&1 || missing+=("$p")
  done
  "$PY" - "$OUTDIR/gpu-check.json" "$WHEELS" "${ALEX:-}" "$CUDA_TEST_FILES" "${missing[*]:-}" <<'PYEOF'
import json, sys
out, wheels, alex, tests, missing = sys.argv[1:6]
doc = {"dry_run": True, "wheels": wheels, "missing_wheels": missing.split() if missing else [],
       "lpips_backbone": alex or None, "cuda_test_files": tests.split(),
       "steps": ["install", "tests", "eval", "train"]}
open(out, "w").write(json.dumps(doc, indent=2))
print(json.dumps(doc))
PYEOF
  exit 0
fi

T_START=$(date +%s)
export PYTHONDONTWRITEBYTECODE=1
# 1. install (no network: local wheels, the project without deps)
install() {
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install --no-index --no-deps --disable-pip-version-check "$WHEELS"/*.whl || return 1
  fi
  "$PY" -m pip install --no-index --no-deps --no-build-isolation --disable-pip-version-check -e "$ROOT"
}
if [ "$INSTALL" = 1 ]; then
  step install "$T_INSTALL" install
  RC_INSTALL=$?
else
  RC_INSTALL=0
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the checkout even when the install step failed

# LPIPS backbone where the tests look for it
SHARED_TMP="$(mktemp -d)"
if [ -n "${ALEX:-}" ] && [ -f "$ALEX" ]; then
  mkdir -p "$SHARED_TMP/lpips"
  ln -sf "$(cd "$(dirname "$ALEX")" && pwd)/$(basename "$ALEX")" "$SHARED_TMP/lpips/alexnet_features.pth"
  export HARMBENCH_LPIPS_ALEX="$ALEX"
fi
export HARMBENCH_SHARED="${HARMBENCH_SHARED:-$SHARED_TMP}"

# 2. CUDA tests: CPU/GPU parity of metrics, LPIPS and the models
# shellcheck disable=SC2086
step tests "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider -m cuda -o addopts="" $CUDA_TEST_FILES
RC_TESTS=$?

# 3. bench eval on the GPU, GPU utilisation sampled meanwhile
SMI_LOG="$LOGS/nvidia-smi-eval.csv"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 > "$SMI_LOG" 2>/dev/null &
  SMI_PID=$!
else
  SMI_PID=""
fi
EVAL_ARGS=(--device cuda --models "$EVAL_MODELS")
if [ -n "${ALEX:-}" ]; then EVAL_ARGS+=(--lpips-weights "$ALEX"); else EVAL_ARGS+=(--no-lpips); fi
step eval "$T_EVAL" "$PY" -m harmbench.cli bench eval "${EVAL_ARGS[@]}"
RC_EVAL=$?
if [ -n "$SMI_PID" ]; then kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null; fi

# 4. bench train of the full-size configs with AMP
step train "$T_TRAIN" "$PY" -m harmbench.cli bench train --device cuda --full --steps "$TRAIN_STEPS" --models "$TRAIN_MODELS"
RC_TRAIN=$?

# 5. one JSON
"$PY" - "$OUTDIR/gpu-check.json" "$STEPS_JSON" "$SMI_LOG" "$T_START" <<'PYEOF'
import json, platform, subprocess, sys, time
out, steps_path, smi_path, t_start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
steps = [json.loads(l) for l in open(steps_path) if l.strip()]
env = {"python": platform.python_version(), "host": platform.node()}
try:
    import torch
    env.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
               gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except Exception as exc:  # noqa: BLE001
    env["torch_error"] = repr(exc)
try:
    env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                        "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except Exception:  # noqa: BLE001
    env["nvidia_smi"] = None
util = []
try:
    for line in open(smi_path):
        parts = [p.strip() for p in line.split(",")]
        if parts and parts[0].isdigit():
            util.append(int(parts[0]))
except OSError:
    pass
doc = {"environment": env, "wall_s": round(time.time() - t_start, 1),
       "ok": all(s["rc"] == 0 for s in steps), "steps": {s["step"]: s for s in steps},
       "eval_gpu_utilization": {"samples": len(util), "mean_percent": round(sum(util) / len(util), 1) if util else None,
                                "busy_fraction": round(sum(u > 0 for u in util) / len(util), 3) if util else None}}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
print(json.dumps({k: doc[k] for k in ("ok", "wall_s", "eval_gpu_utilization")}))
PYEOF
rm -rf "$SHARED_TMP"
echo "gpu-check: wrote $OUTDIR/gpu-check.json"
[ $RC_INSTALL -eq 0 ] && [ $RC_TESTS -eq 0 ] && [ $RC_EVAL -eq 0 ] && [ $RC_TRAIN -eq 0 ]
