#!/usr/bin/env bash
# atbench GPU readiness check. NOT a benchmark result: it checks that the GPU path runs and times
# it once, on throwaway models, so that the README's Speed table can be filled in by a proper
# `atbench bench` run afterwards.
#
# On a CUDA machine with a clone of atbench and pip, in at most 10 minutes (each step runs under
# `timeout`; the steps left when the time is spent are skipped and reported):
#   1. install: unless `python3` (or an earlier check's .venv-gpu) already imports atbench, its test
#      tools and a CUDA torch, make .venv-gpu and run there
#        env -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS pip install -c constraints.txt -e '.[test]'
#      (constraints.txt pins torch==2.13.0, whose public wheel is the CUDA build on Linux x86_64,
#      about 2.7 GB; the variables are cleared so that a CPU wheel index or folder cannot win)
#   2. the GPU tests: python -m pytest -m gpu -p no:xdist (tests/test_gpu.py)
#   3. the training step: train synthetic-tiny pgd-at on the GPU (seconds; `bench` needs a trained
#      run), then `atbench bench at-step --device cuda --train-model preact-resnet18`
#   4. AutoAttack on 1,000 points: MNIST (`atbench data download mnist`, skipped without it), one
#      epoch of the mnist-cnn recipe with pgd-at, then the bench's autoattack-adapter case on
#      1,000 test points of that model
#   5. the same training step with --compile
#   6. the Speed table's rows for this GPU, as Markdown (tools/gpu_rows.py)
#
# Usage: tools/gpu_check.sh [--dry-run] [--work DIR] [--budget SECONDS]
#   --dry-run      print the commands with their time limits, run nothing (works without a GPU)
#   --work DIR     where runs and bench results go (default: a new temporary folder; a relative
#                  DIR is taken from the checkout's root)
#   --budget S     total seconds (default 600)
# Environment: PYTHON (default python3), ATBENCH_DATA_DIR (where MNIST is or goes).
# Exit code: 0 when every step ran, 1 otherwise (the rows measured so far are still printed).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
WORK=""
BUDGET=600
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --work) WORK="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        *) echo "usage: tools/gpu_check.sh [--dry-run] [--work DIR] [--budget SECONDS]" >&2; exit 2 ;;
    esac
    shift
done
PY="${PYTHON:-python3}"
[ -z "${PYTHON:-}" ] && [ -x .venv-gpu/bin/python ] && PY=.venv-gpu/bin/python  # made by an earlier check
DEADLINE=$((SECONDS + BUDGET))
RESERVE=20  # seconds kept for printing the rows
FAILED=()
if [ -z "$WORK" ]; then
    WORK=$( [ "$DRY" = 1 ] && echo /tmp/atbench-gpu-check || mktemp -d -t atbench-gpu-check.XXXXXX )
fi
[ "$DRY" = 1 ] || mkdir -p "$WORK" || exit 2

# step NAME CAP CMD...: run CMD under `timeout` for at most CAP seconds and what is left of the
# budget; a failure, a timeout or a spent budget is recorded in FAILED.
step() {
    local name="$1" cap="$2"
    shift 2
    local left=$((DEADLINE - SECONDS - RESERVE))
    [ "$cap" -gt "$left" ] && cap=$left
    if [ "$DRY" = 1 ]; then
        echo "[$name] timeout $cap $*"
        return 0
    fi
    if [ "$cap" -le 0 ]; then
        echo "atbench gpu check: $name skipped: the ${BUDGET} s budget is spent" >&2
        FAILED+=("$name (no time left)")
        return 1
    fi
    echo "== $name (at most $cap s)" >&2
    timeout -k 10 "$cap" "$@"
    local code=$?
    if [ "$code" -ne 0 ]; then
        [ "$code" -eq 124 ] && FAILED+=("$name (timed out after $cap s)") || FAILED+=("$name (exit $code)")
        return 1
    fi
}

# 1. an environment with atbench and a CUDA torch
READY='import pyautoattack, pytest, torch, benchmark.pipeline.steps; assert torch.cuda.is_available()'
if [ "$DRY" = 1 ] || ! "$PY" -c "$READY" 2>/dev/null; then
    step venv 60 "$PY" -m venv .venv-gpu && PY=.venv-gpu/bin/python &&
    step install 300 env -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS "$PY" -m pip install --quiet \
        -c constraints.txt -e ".[test]" || { printf 'atbench gpu check: failed: %s\n' "${FAILED[@]}" >&2; exit 1; }
    if [ "$DRY" = 0 ] && ! "$PY" -c "$READY" 2>/dev/null; then
        echo "atbench gpu check: $PY does not import atbench with a usable CUDA device" \
             "(torch.cuda.is_available() is False?)" >&2
        exit 1
    fi
fi
ATBENCH=("$PY" -m benchmark.commands.cli)

# 2. the GPU tests
step gpu-tests 150 "$PY" -m pytest -m gpu -p no:xdist -q

# 3. the training step (PreActResNet-18, CIFAR-10-shaped data), after a run the bench can load
RUNS="$WORK/runs"
step train-synthetic 60 "${ATBENCH[@]}" train --track synthetic-tiny --defense pgd-at --device cuda \
    --runs-dir "$RUNS" -q &&
step at-step 90 "${ATBENCH[@]}" bench at-step --track synthetic-tiny --defense pgd-at --device cuda \
    --train-model preact-resnet18 --repeats 2 --runs-dir "$RUNS" --json "$WORK/at-step.json"

# 4. AutoAttack on 1,000 points of a one-epoch mnist-cnn pgd-at model (the bench command takes only
# built-in tracks, so this step calls its functions with the one-epoch track of a track file)
if [ "$DRY" = 0 ]; then
    cat > "$WORK/tracks.py" <<'EOF'
import dataclasses

from benchmark.core.registry import TRACKS

TRACKS.register(dataclasses.replace(TRACKS.get("mnist-cnn"), name="mnist-cnn-1epoch", epochs=1))
EOF
fi
AUTOATTACK='import dataclasses, sys
from benchmark.commands.bench import run_cases, trained_workload, write_json
from benchmark.core.plugins import load_track_files
from benchmark.core.registry import TRACKS
work_dir = sys.argv[1]
load_track_files([work_dir + "/tracks.py"])
track = TRACKS.get("mnist-cnn-1epoch")
work = trained_workload(track, "pgd-at", 0, runs_dir=work_dir + "/runs", data_dir=None, device="cuda", points=1000)
work = dataclasses.replace(work, name=f"{track.name} {work.name}")
write_json(work_dir + "/autoattack.json", work, run_cases(work, ["autoattack-adapter"]))'
if [ "$DRY" = 0 ] && "${ATBENCH[@]}" data ls 2>/dev/null | grep -q "^mnist  *verified"; then
    echo "== mnist: present" >&2
else
    step mnist 90 "${ATBENCH[@]}" data download mnist -q
fi &&
step train-mnist 150 "${ATBENCH[@]}" train --track-file "$WORK/tracks.py" --track mnist-cnn-1epoch \
    --defense pgd-at --device cuda --runs-dir "$RUNS" -q &&
step autoattack 240 "$PY" -c "$AUTOATTACK" "$WORK"

# 5. the training step with torch.compile
[ -f "$WORK/at-step.json" ] || [ "$DRY" = 1 ] &&
step at-step-compile 120 "${ATBENCH[@]}" bench at-step --track synthetic-tiny --defense pgd-at --device cuda \
    --train-model preact-resnet18 --repeats 2 --compile --runs-dir "$RUNS" --json "$WORK/at-step-compile.json"

# 6. the rows
RESULTS=()
for name in at-step at-step-compile autoattack; do
    [ -f "$WORK/$name.json" ] && RESULTS+=("$WORK/$name.json")
done
if [ "$DRY" = 1 ]; then
    echo "[rows] $PY tools/gpu_rows.py --device-name DEVICE $WORK/at-step.json $WORK/at-step-compile.json" \
         "$WORK/autoattack.json"
    exit 0
fi
DEVICE_NAME=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null || echo "CUDA device")
echo
echo "GPU readiness check (not a benchmark result), $DEVICE_NAME, results in $WORK:"
echo
if [ "${#RESULTS[@]}" -gt 0 ]; then
    "$PY" tools/gpu_rows.py --device-name "$DEVICE_NAME" "${RESULTS[@]}" || FAILED+=("rows")
else
    echo "no measurement finished: no rows"
fi
if [ "${#FAILED[@]}" -gt 0 ]; then
    printf 'atbench gpu check: not done: %s\n' "${FAILED[@]}" >&2
    exit 1
fi
