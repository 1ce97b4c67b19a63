#!/usr/bin/env bash
# gpu-check.sh: the prepared device check of Shoal's CUDA path (issue 13, item 8), for a machine
# with one NVIDIA GPU, the CUDA 13 libraries from Python wheels (nvidia-cublas, nvidia-cuda-nvrtc,
# nvidia-nccl-cu13 under site-packages nvidia/*/lib) and Python PyTorch, but no Rust toolchain
# and no network. It runs prebuilt x86-64 binaries (built with `--features cuda`) in about five
# minutes.
#
# Usage:
#   deploy/gpu-check.sh [BIN_DIR] [PEERS_DIR]
#     BIN_DIR    shoal, shoal-worker, shoal-coordinator, ... or their .xz copies made by
#                deploy/gpu-pack.sh (default: $SHOAL_BIN_DIR, else ./bin)
#     PEERS_DIR  the peers folder holding gpu_mlp.py (default: $SHOAL_PEERS_DIR, else
#                ../shared/peers, else ./shared/peers)
#   Environment: PYTHON (python3), STEP_TIMEOUT (seconds per step, 300), GPU_CHECK_WORK (scratch
#   folder, default a new one under /tmp; logs and every result stay there), GPU_CHECK_QUICK=1
#   (fewer steps: a smoke test of the script itself, not a measurement).
#
# Output: one JSON object per line on stdout, each with "check" and "ok"; progress on stderr.
#   setup         binaries unpacked, CUDA wheel folders found, LD_LIBRARY_PATH and the symlink
#                 folder (libnccl.so -> libnccl.so.2, ...)
#   devices       `shoal-worker devices` (GPUs, driver, NCCL)
#   parity        `shoal bench parity --device cuda --steps 200`: reference MLP and digits CNN, CPU
#                 engine against the GPU in fp32, every parameter within 1e-4 relative; a resume
#                 line (the CNN drained on the GPU and finished on the CPU)
#   local         `shoal local` on a GPU worker: digits MLP and CNN with resources.gpus = 1 reach
#                 >= 0.90 validation accuracy, and trained on the GPU (the worker's log says so)
#   bench_train   `shoal bench train --device cuda` at batch 128, 1024, 8192 in fp32, tf32 and
#                 bf16
#   peer          ../shared/peers/gpu_mlp.py in the same run: eager and graph modes, the same
#                 batches and precisions, and its gemm_peak lines
#   allreduce     NCCL all-reduce of 256 MiB at world size 1 (`shoal bench allreduce --backend
#                 nccl`): "path": "staged" for host buffers staged through GPU memory (the issue
#                 quotes 70 ms on an H100 for it) and "path": "device" for buffers already in GPU
#                 memory, summed in place as training sums its gradient buckets
#   resume        the digits MLP trained on the GPU, its checkpoint taken up by a CPU job
#                 (gpus = 0, `inherit`): the validation loss carries over
#   summary       Shoal samples/s over PyTorch eager and graph at batch 128 and 8192 per
#                 precision, the share of the gemm peak at 8192, the issue's targets, failures
#   A check that cannot run (no GPU, a missing library, a timeout) prints "ok": false and why,
#   and the script goes on. Exit status: 0 when every check passed, 1 otherwise.

set -uo pipefail

PY=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
QUICK=${GPU_CHECK_QUICK:-0}
BIN_SRC=${1:-${SHOAL_BIN_DIR:-./bin}}
PEERS=${2:-${SHOAL_PEERS_DIR:-}}
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/shoal-gpu-check.XXXXXX)}
LOGS=$WORK/logs
RESULTS=$WORK/results.jsonl
BIN=$WORK/bin
BATCHES=(128 1024 8192)
PRECISIONS=(fp32 tf32 bf16)
if [[ $QUICK == 1 ]]; then
  TRAIN_STEPS=60 TRAIN_WARMUP=10 PARITY_STEPS=20
else
  TRAIN_STEPS=600 TRAIN_WARMUP=100 PARITY_STEPS=200
fi
HAVE_GPU=0
FAILED=0

log() { printf '%s gpu-check: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# emit CHECK OK [KEY=STRING | KEY:=JSON ...]: prints one result line and keeps it in $RESULTS.
emit() {
  [[ $2 == true ]] || FAILED=1
  "$PY" -c '
import json, sys
record = {"check": sys.argv[1], "ok": sys.argv[2] == "true"}
for arg in sys.argv[3:]:
    key, sep, value = arg.partition(":=")
    if sep:
        try:
            record[key] = json.loads(value)
        except ValueError:
            record[key] = value
    else:
        key, _, value = arg.partition("=")
        record[key] = value
print(json.dumps(record), flush=True)
' "$@" | tee -a "$RESULTS"
}

# relay CHECK < lines: passes the JSON objects among the lines on, tagged with CHECK (records
# that carry no "ok" of their own get OK_DEFAULT); returns 1 when any says "ok": false.
relay() {
  "$PY" -c '
import json, sys
bad = False
for line in sys.stdin:
    try:
        record = json.loads(line)
    except ValueError:
        continue
    if not isinstance(record, dict):
        continue
    record = {"check": sys.argv[1], **record}
    record.setdefault("ok", sys.argv[2] == "true" and record.get("correct", True) is not False)
    bad = bad or record["ok"] is not True
    print(json.dumps(record), flush=True)
sys.exit(1 if bad else 0)
' "$1" "${2:-true}" | tee -a "$RESULTS"
  local rc=${PIPESTATUS[0]}
  [[ $rc == 0 ]] || FAILED=1
  return "$rc"
}

# step NAME CMD...: runs CMD under the step timeout (SIGINT first, as Ctrl-C, then SIGKILL),
# stdout to $LOGS/NAME.out and stderr to $LOGS/NAME.err; returns its exit status (124: timed out).
step() {
  local name=$1
  shift
  log "$name: $*"
  timeout -s INT -k 20 "$STEP_TIMEOUT" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err"
}

# The last lines of a step's stderr, for a failure record.
why() { tail -n "${2:-4}" "$LOGS/$1.err" 2>/dev/null | tr -s '\n' ' ' | cut -c1-600; }

# failed CHECK STEP RC [KEY=... ...]: the record of a step that did not succeed.
failed() {
  local check=$1 name=$2 rc=$3
  shift 3
  local reason
  reason=$(why "$name")
  [[ $rc == 124 || $rc == 137 ]] && reason="timed out after ${STEP_TIMEOUT}s; $reason"
  emit "$check" false "rc:=$rc" "reason=$reason" "log=$LOGS/$name.err" "$@"
}

no_gpu() { emit "$1" false "reason=skipped: shoal-worker found no GPU (see the devices line)" "${@:2}"; }

# --- setup ---------------------------------------------------------------------------------------

unpack_binaries() {
  mkdir -p "$BIN"
  local name found=0
  for name in shoal shoal-worker shoal-coordinator shoal-param-server; do
    if [[ -f $BIN_SRC/$name.xz ]]; then
      if command -v xz >/dev/null; then
        xz -dc "$BIN_SRC/$name.xz" >"$BIN/$name" || return 1
      else
        "$PY" -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$BIN_SRC/$name.xz" "$BIN/$name" || return 1
      fi
    elif [[ -f $BIN_SRC/$name ]]; then
      cp "$BIN_SRC/$name" "$BIN/$name" || return 1
    else
      continue
    fi
    chmod +x "$BIN/$name"
    found=$((found + 1))
  done
  [[ -x $BIN/shoal && -x $BIN/shoal-worker ]] || return 1
  log "unpacked $found binaries into $BIN"
}

# Prints the lib folders of the NVIDIA Python wheels (nvidia/*/lib), one per line.
wheel_lib_dirs() {
  "$PY" -c '
import pathlib, site, sys
roots = list(sys.path)
try:
    roots += site.getsitepackages() + [site.getusersitepackages()]
except AttributeError:
    pass
try:
    import nvidia
    roots += [str(pathlib.Path(p).parent) for p in nvidia.__path__]
except ImportError:
    pass
seen = []
for root in roots:
    base = pathlib.Path(root) / "nvidia"
    if base.is_dir():
        for lib in sorted(base.glob("*/lib")):
            if lib.is_dir() and str(lib.resolve()) not in seen:
                seen.append(str(lib.resolve()))
print("\n".join(seen))
' 2>/dev/null
}

# Links unversioned names to versioned libraries (cudarc looks for libnccl.so, not .so.2).
make_links() {
  local links=$WORK/lib dir lib base
  mkdir -p "$links"
  for dir in "$@"; do
    for lib in "$dir"/lib*.so.*; do
      [[ -e $lib ]] || continue
      base=$(basename "$lib")
      base=${base%%.so.*}.so
      [[ -e $dir/$base || -e $links/$base ]] || ln -s "$lib" "$links/$base"
    done
  done
  # The driver ships with the system, usually as libcuda.so.1 only.
  if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so '; then
    lib=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')
    for dir in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64 /usr/lib/wsl/lib; do
      [[ -z $lib && -e $dir/libcuda.so.1 ]] && lib=$dir/libcuda.so.1
    done
    [[ -n $lib && ! -e $links/libcuda.so ]] && ln -s "$lib" "$links/libcuda.so"
  fi
  find "$links" -maxdepth 1 -type l -printf '%f\n' | sort | paste -sd, -
}

check_setup() {
  mkdir -p "$LOGS"
  : >"$RESULTS"
  if [[ -z $PEERS ]]; then
    PEERS=../shared/peers
    [[ -f $PEERS/gpu_mlp.py || ! -f shared/peers/gpu_mlp.py ]] || PEERS=shared/peers
  fi
  if ! command -v "$PY" >/dev/null; then
    printf '{"check": "setup", "ok": false, "reason": "%s not found: the check needs Python"}\n' "$PY"
    exit 1
  fi
  if ! unpack_binaries; then
    emit setup false "reason=no shoal and shoal-worker (or .xz) in $BIN_SRC" "bin_src=$BIN_SRC"
    return 1
  fi
  local dirs=() line links smi
  while IFS= read -r line; do [[ -n $line ]] && dirs+=("$line"); done < <(wheel_lib_dirs)
  links=$(make_links "${dirs[@]}")
  local path=$WORK/lib
  for line in "${dirs[@]}"; do path=$path:$line; done
  export LD_LIBRARY_PATH=$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export SHOAL_WORKER_BIN=$BIN/shoal-worker SHOAL_PARAM_SERVER_BIN=$BIN/shoal-param-server
  smi=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 4)
  local dirs_json
  dirs_json=$("$PY" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${dirs[@]}")
  emit setup true "work=$WORK" "bin=$BIN" "peers=$PEERS" "wheel_lib_dirs:=$dirs_json" "links=$links" \
    "nvidia_smi=$smi" "shoal_version=$("$BIN/shoal" --version 2>&1)" "arch=$(uname -m)" \
    "host=$(hostname)" "cpus:=$(nproc)" "quick:=$([[ $QUICK == 1 ]] && echo true || echo false)"
}

# --- checks --------------------------------------------------------------------------------------

check_devices() {
  step devices "$BIN/shoal-worker" devices
  local rc=$?
  if [[ $rc != 0 ]]; then
    failed devices devices "$rc"
    return
  fi
  local devices ngpu
  devices=$(tail -n 1 "$LOGS/devices.out")
  ngpu=$("$PY" -c 'import json, sys; print(len(json.loads(sys.argv[1]).get("gpus", [])))' "$devices" 2>/dev/null)
  if [[ ${ngpu:-0} -gt 0 ]]; then
    HAVE_GPU=1
    emit devices true "gpus:=$ngpu" "devices:=$devices"
  else
    emit devices false "gpus:=0" "devices:=$devices" "reason=shoal-worker registers no GPU"
  fi
}

check_parity() {
  step parity "$BIN/shoal" bench parity --device cuda --steps "$PARITY_STEPS"
  local rc=$?
  relay parity <"$LOGS/parity.out" || true
  [[ $rc == 0 ]] || failed parity parity "$rc" "steps:=$PARITY_STEPS"
}

# job_file NAME GPUS: a digits job (mlp or cnn) asking for GPUS GPUs.
job_file() {
  local file=$WORK/$1-gpus$2.toml
  case $1 in
    mlp)
      cat >"$file" <<EOF
name = "gpu-check-digits-mlp"
[model]
kind = "mlp"
activation = "relu"
layers = [{ width = 128 }, { width = 64 }]
dropout = 0.1
[dataset]
kind = "digits"
validation_split = 0.2
[optimizer]
kind = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 0.0001
[optimizer.schedule]
kind = "cosine"
warmup_steps = 50
[training]
batch_size = 32
epochs = 30
seed = 42
log_every = 20
checkpoint_every = 500
[resources]
cpus = 1
memory_mb = 512
gpus = $2
EOF
      ;;
    cnn)
      cat >"$file" <<EOF
name = "gpu-check-digits-cnn"
[model]
kind = "cnn"
layers = [
  { type = "conv", channels = 16, kernel = 3, padding = 1 },
  { type = "pool", pool = "max", size = 2 },
  { type = "conv", channels = 32, kernel = 3, padding = 1 },
  { width = 64 },
]
[dataset]
kind = "digits"
[optimizer]
kind = "adamw"
lr = 0.003
[optimizer.schedule]
kind = "step"
step_size = 400
gamma = 0.5
[training]
batch_size = 64
epochs = 25
seed = 1
[resources]
cpus = 1
memory_mb = 512
gpus = $2
EOF
      ;;
  esac
  printf '%s\n' "$file"
}

# A number after PREFIX in a step's stdout (the summary lines of `shoal local`).
number_after() {
  grep -o "$2 [0-9.eE+-]*" "$LOGS/$1.out" 2>/dev/null | tail -n 1 | awk '{print $NF}'
}

# local_job NAME FILE: runs FILE with `shoal local` on one worker; sets ACC (final validation
# accuracy), VAL_LOSS (final validation loss) and CKPT (final checkpoint).
local_job() {
  local name=$1 file=$2
  rm -rf "${WORK:?}/${name:?}"
  step "$name" "$BIN/shoal" local "$file" --workers 1 --data-dir "$WORK/$name"
  local rc=$?
  ACC=$(number_after "$name" 'final validation accuracy:')
  # The worker's log has the last validation loss in full; the summary line rounds it to 4 digits.
  VAL_LOSS=$(cat "$WORK/$name"/worker-*.log 2>/dev/null | grep -o 'validation step=[0-9]* epoch=[0-9]* loss=[0-9.eE+-]*' |
    tail -n 1 | sed 's/.*loss=//')
  [[ -n $VAL_LOSS ]] || VAL_LOSS=$(number_after "$name" 'validation loss')
  CKPT=$(grep -o 'checkpoint: .*' "$LOGS/$name.out" 2>/dev/null | tail -n 1 | cut -d' ' -f2-)
  return "$rc"
}

check_local() {
  local model file rc start on_gpu ok
  for model in mlp cnn; do
    if [[ $HAVE_GPU != 1 ]]; then
      no_gpu local "model=$model"
      continue
    fi
    file=$(job_file "$model" 1)
    start=$SECONDS
    local_job "local-$model" "$file"
    rc=$?
    on_gpu=false
    grep -q 'training on the GPU' "$WORK/local-$model"/worker-*.log 2>/dev/null && on_gpu=true
    if [[ $rc != 0 || -z $ACC ]]; then
      failed local "local-$model" "$rc" "model=$model" "on_gpu:=$on_gpu"
      continue
    fi
    ok=$("$PY" -c 'import sys; print("true" if float(sys.argv[1]) >= 0.90 and sys.argv[2] == "true" else "false")' "$ACC" "$on_gpu")
    emit local "$ok" "model=$model" "gpus:=1" "validation_accuracy:=$ACC" "validation_loss:=${VAL_LOSS:-null}" \
      "on_gpu:=$on_gpu" "target:=0.90" "seconds:=$((SECONDS - start))" "checkpoint=$CKPT"
    [[ $model == mlp ]] && MLP_CKPT=$CKPT MLP_VAL_LOSS=$VAL_LOSS
  done
}

check_bench_train() {
  local p b rc name
  for p in "${PRECISIONS[@]}"; do
    for b in "${BATCHES[@]}"; do
      name=train-$p-$b
      step "$name" "$BIN/shoal" bench train --device cuda --precision "$p" --batch "$b" \
        --steps "$TRAIN_STEPS" --warmup "$TRAIN_WARMUP"
      rc=$?
      if [[ $rc == 0 ]]; then
        relay bench_train < <(grep -v '"kind":"meta"' "$LOGS/$name.out") || true
      else
        failed bench_train "$name" "$rc" "precision=$p" "batch_per_rank:=$b"
      fi
    done
  done
}

check_peer() {
  if [[ ! -f $PEERS/gpu_mlp.py ]]; then
    emit peer false "reason=gpu_mlp.py not found in $PEERS"
    return
  fi
  local args=()
  [[ $QUICK == 1 ]] && args=(--steps 120 --warmup 20)
  step peer env -C "$PEERS" "$PY" gpu_mlp.py "${args[@]}"
  local rc=$?
  relay peer <"$LOGS/peer.out" || true
  [[ $rc == 0 ]] || failed peer peer "$rc"
}

check_allreduce() {
  step allreduce "$BIN/shoal" bench allreduce --backend nccl --ranks 1 --sizes 256M
  local rc=$?
  if [[ $rc == 0 ]]; then
    relay allreduce < <(grep -v '"kind":"meta"' "$LOGS/allreduce.out") || true
  else
    failed allreduce allreduce "$rc" "backend=nccl" "bytes:=268435456"
  fi
}

# The GPU job's checkpoint taken up by a CPU job (gpus = 0) with `inherit`: one step at a learning
# rate of 1e-9, so its final validation loss is the parent's, now computed by the CPU engine.
check_resume() {
  if [[ $HAVE_GPU != 1 ]]; then
    no_gpu resume
    return
  fi
  if [[ -z ${MLP_CKPT:-} || -z ${MLP_VAL_LOSS:-} ]]; then
    emit resume false "reason=no checkpoint and validation loss from the GPU digits MLP (see its local line)"
    return
  fi
  local file=$WORK/mlp-resume-cpu.toml
  sed -e '/^\[optimizer.schedule\]/,/^warmup_steps/d' -e 's/^lr = 0.05/lr = 1e-9/' -e 's/^epochs = 30/steps = 1/' \
    -e 's/^gpus = 1/gpus = 0/' -e 's/^name = .*/name = "gpu-check-resume-on-cpu"/' "$(job_file mlp 1)" >"$file"
  cat >>"$file" <<EOF
[inherit]
checkpoint = "$MLP_CKPT"
[inherit.model]
kind = "mlp"
activation = "relu"
layers = [{ width = 128 }, { width = 64 }]
dropout = 0.1
EOF
  local_job resume-cpu "$file"
  local rc=$?
  if [[ $rc != 0 || -z $VAL_LOSS ]]; then
    failed resume resume-cpu "$rc" "from=$MLP_CKPT"
    return
  fi
  local rel ok
  rel=$("$PY" -c 'import sys; a, b = map(float, sys.argv[1:]); print(abs(a - b) / max(abs(a), 1e-12))' "$MLP_VAL_LOSS" "$VAL_LOSS")
  ok=$("$PY" -c 'import sys; print("true" if float(sys.argv[1]) <= 1e-3 else "false")' "$rel")
  emit resume "$ok" "from=cuda:0" "to=cpu" "how=inherit (weights; the parity resume line also carries the optimizer state)" \
    "checkpoint=$MLP_CKPT" "validation_loss_gpu:=$MLP_VAL_LOSS" "validation_loss_cpu:=$VAL_LOSS" \
    "validation_accuracy_cpu:=${ACC:-null}" "loss_rel_diff:=$rel" "tolerance:=1e-3"
}

check_summary() {
  "$PY" - "$RESULTS" <<'EOF' | tee -a "$RESULTS"
import json, sys

records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
shoal = {(r.get("precision"), r.get("batch_per_rank")): r for r in records
         if r.get("check") == "bench_train" and r.get("samples_per_s")}
peer = {(r.get("precision"), r.get("mode"), r.get("batch_per_rank")): r for r in records
        if r.get("bench") == "gpu_mlp" and r.get("mode") and r.get("samples_per_s")}
peak = {r["precision"]: r["tflops"] for r in records if r.get("kind") == "gemm_peak"}

def ratio(a, b):
    return round(a / b, 3) if a and b else None

ratios, targets = {}, {}
for p in ("fp32", "tf32", "bf16"):
    for b in (128, 8192):
        s = shoal.get((p, b), {}).get("samples_per_s")
        for mode in ("eager", "graph"):
            ratios[f"{p}_b{b}_vs_{mode}"] = ratio(s, peer.get((p, mode, b), {}).get("samples_per_s"))
    t = shoal.get((p, 8192), {}).get("tflops")
    ratios[f"{p}_b8192_peak_share"] = ratio(t, peak.get(p))
for p in ("fp32", "tf32"):
    targets[f"{p}_b128_vs_eager>=1.5"] = ratios[f"{p}_b128_vs_eager"]
    targets[f"{p}_b128_vs_graph>=1.0"] = ratios[f"{p}_b128_vs_graph"]
    targets[f"{p}_b8192_vs_eager>=1.0"] = ratios[f"{p}_b8192_vs_eager"]
targets["fp32_b8192_peak_share>=0.5"] = ratios["fp32_b8192_peak_share"]
targets["bf16_b8192_vs_autocast>=1.0"] = ratios["bf16_b8192_vs_eager"]
met = {k: (v is not None and v >= float(k.rsplit(">=", 1)[1])) for k, v in targets.items()}
failed = sorted({r["check"] for r in records if r.get("ok") is False and not r.get("missing")})
missing = [f'{r["check"]}: {r.get("precision") or r.get("path")}' for r in records if r.get("missing")]
print(json.dumps({
    "check": "summary", "ok": not failed and all(met.values()),
    "ratios": ratios, "targets": targets, "targets_met": met,
    "gemm_peak_tflops": peak, "failed_checks": failed, "missing": missing,
    "shoal_samples_per_s": {f"{p}_b{b}": r["samples_per_s"] for (p, b), r in sorted(shoal.items())},
}))
EOF
}

main() {
  check_setup || {
    log "setup failed; nothing can run"
    exit 1
  }
  log "results in $RESULTS; logs in $LOGS"
  check_devices
  check_parity
  check_local
  check_bench_train
  check_peer
  check_allreduce
  check_resume
  check_summary
  # The summary's ok counts the performance targets too; the exit status too.
  if [[ $FAILED != 0 ]] || ! tail -n 1 "$RESULTS" | grep -q '"ok": true'; then
    log "some checks failed (see the lines with \"ok\": false)"
    exit 1
  fi
  log "every check passed"
}

# Run when executed; when sourced (to try one check by hand), only define the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
