#!/usr/bin/env bash
# The prepared GPU check of issue 27: everything this project can only check on a CUDA GPU, in one run of
# under 8 minutes on one GPU. Every step has its own time limit; a step that fails or times out is reported
# and the check goes on. What it writes goes to $OUT (default bench_out/device_check, git-ignored):
#
#   summary.md         the steps (status, seconds), the `vpp bench` tables, `vpp infer` device vs CPU, fused kernel
#   device_check.log   every step's command and output
#   env.json           Python, torch, GPU, fused kernel and dependency versions
#   bench.json         the bench rows (default model, Tiny, Small, adapter-tiny, adapter-small at 960x540)
#   infer_compare.json `vpp infer --device cuda` against `--device cpu` per clip: tracks, IoUs, whole-process times
#   fused.json         the fused deformable-attention kernel against the PyTorch path (when one is importable)
#
# Steps: env; the tests that need CUDA (the test files that mention it; those under tests/gui only where Qt is
# importable); `vpp bench --device cuda` per variant and the default model's rows (scripts/device_check.py
# bench-default); `vpp infer` on CPU and on the device for each clip, compared by scripts/device_check.py
# compare (as many tracks, matched one to one, masks IoU >= 0.99 over the clip, same categories); the fused
# kernel (built first from $DEFORM_OPS_SRC, a checkout of Deformable DETR's models/ops, when it is not
# importable and that is set); the summary.
#
#   bash scripts/device_check.sh              # on the GPU machine
#   bash scripts/device_check.sh --dry-run    # here, on CPU: the same steps on a tiny subset (DEVICE=cpu)
#
# Environment: OUT, DEVICE (cuda), PYTHON (a Python with torch; default: .venv's, else python3, whichever has
# CUDA), CLIPS (colon-separated frame folders or videos; default: ../shared/data/davis_car_shadow/frames,
# else data/davis_car_shadow/frames, and resources/demo_clip), WHEELS (a folder of wheels for packages the
# Python lacks, e.g. pycocotools; default data/wheels), BUDGET_S (420: later steps are skipped once this many
# seconds have passed, so the whole check ends well inside 8 minutes), REPEATS / WARMUP (bench rounds, 7 / 2).
# Exit status: 0 when no step failed (skipped steps are fine), 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $arg (use --dry-run or --help)" >&2; exit 2 ;;
    esac
done
if [ "$DRY_RUN" = 1 ]; then DEVICE="${DEVICE:-cpu}"; else DEVICE="${DEVICE:-cuda}"; fi
OUT="${OUT:-$ROOT/bench_out/device_check}"
BUDGET_S="${BUDGET_S:-420}"
REPEATS="${REPEATS:-7}"
WARMUP="${WARMUP:-2}"
WHEELS="${WHEELS:-$ROOT/data/wheels}"
mkdir -p "$OUT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vpp-device-check.XXXXXX")"
LOG="$OUT/device_check.log"
: > "$LOG"
: > "$WORK/steps.tsv"
START=$SECONDS
cd "$ROOT"

say() { echo "[device-check $((SECONDS - START))s] $*" | tee -a "$LOG" >&2; }

# step NAME LIMIT_S COMMAND...: run it with a time limit, log its output, record its status; never stops the script
step() {
    local name="$1" limit="$2"
    shift 2
    local elapsed=$((SECONDS - START))
    if [ "$elapsed" -ge "$BUDGET_S" ]; then
        printf '%s\tskipped\t0\tthe time budget (%s s) was spent\n' "$name" "$BUDGET_S" >> "$WORK/steps.tsv"
        say "$name: skipped (time budget)"
        return 0
    fi
    if [ $((elapsed + limit)) -gt "$BUDGET_S" ]; then
        limit=$((BUDGET_S - elapsed > 30 ? BUDGET_S - elapsed : 30))
    fi
    say "$name: $* (limit ${limit}s)"
    local t0=$SECONDS rc=0
    {
        echo "=== $name: $*"
    } >> "$LOG"
    if timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.out" 2>&1; then rc=0; else rc=$?; fi
    cat "$WORK/$name.out" >> "$LOG"
    local secs=$((SECONDS - t0)) status note
    note="$(grep -v '^\s*$' "$WORK/$name.out" | tail -n 1 | tr '\t|' '  ' | cut -c1-160 || true)"
    case "$rc" in
        0) status="ok" ;;
        3) status="skipped" ;;
        124|137) status="timed out (${limit} s)" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "$note" >> "$WORK/steps.tsv"
    say "$name: $status in ${secs}s"
    return 0
}

# -- a Python with torch (and CUDA unless --dry-run) and the project's imports ---------------------------------
has_torch() {  # has_torch PY [cuda]
    local want_cuda="${2:-}"
    "$1" -c "import torch, sys; sys.exit(0 if ('$want_cuda' != 'cuda' or torch.cuda.is_available()) else 1)" \
        > /dev/null 2>&1
}
pick_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return 0; fi
    local need=""
    [ "$DEVICE" = cpu ] || need=cuda
    for py in "$ROOT/.venv/bin/python" python3; do
        if command -v "$py" > /dev/null 2>&1 && has_torch "$py" "$need"; then echo "$py"; return 0; fi
    done
    if [ ! -x "$ROOT/.venv/bin/python" ]; then  # a machine with internet: the project's own setup
        say "no Python with torch${need:+ and CUDA}: trying scripts/setup_env.sh (needs the package index)"
        if timeout 300 bash "$ROOT/scripts/setup_env.sh" >> "$LOG" 2>&1 && has_torch "$ROOT/.venv/bin/python" "$need"; then
            echo "$ROOT/.venv/bin/python"; return 0
        fi
    fi
    return 1
}
if ! PY="$(pick_python)"; then
    say "error: no Python with torch${DEVICE:+ for $DEVICE} found (set PYTHON=/path/to/python)"
    printf 'python\tFAILED (no Python with torch for %s)\t0\tset PYTHON\n' "$DEVICE" >> "$WORK/steps.tsv"
    PY=python3
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 QT_QPA_PLATFORM=offscreen
if ! "$PY" -c "import numpy, cv2, pycocotools, safetensors, scipy, PIL" > /dev/null 2>&1; then
    SITE="$WORK/site"
    if compgen -G "$WHEELS/*.whl" > /dev/null; then
        say "installing the carried wheels of $WHEELS into $SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl \
            >> "$LOG" 2>&1 || say "warning: the wheels in $WHEELS did not install"
    else
        say "pycocotools (or another dependency) is missing and $WHEELS holds no wheels: trying pip"
        timeout 120 "$PY" -m pip install -q --target "$SITE" pycocotools >> "$LOG" 2>&1 || say "warning: pip failed"
    fi
    export PYTHONPATH="$ROOT:$SITE"
fi
say "python: $PY ($("$PY" --version 2>&1)); device $DEVICE; work folder $WORK; out $OUT"

# -- what runs ------------------------------------------------------------------------------------------------
if [ -z "${CLIPS:-}" ]; then
    CLIPS=""
    for c in "$ROOT/../shared/data/davis_car_shadow/frames" "$ROOT/data/davis_car_shadow/frames" \
             "$ROOT/shared/data/davis_car_shadow/frames"; do
        if [ -d "$c" ]; then CLIPS="$c"; break; fi
    done
    CLIPS="${CLIPS:+$CLIPS:}$ROOT/resources/demo_clip"
fi
SIZE=960x540
VARIANTS=(tiny small adapter-tiny adapter-small)
TESTS=()
while IFS= read -r f; do
    case "$f" in
        tests/gui/*) "$PY" -c "import PySide6, pytestqt" > /dev/null 2>&1 && TESTS+=("$f") ;;
        *) TESTS+=("$f") ;;
    esac
done < <(grep -rl "cuda" tests --include='test_*.py' | sort)
PYTEST_ARGS=(-q -rs -p no:cacheprovider)
if [ "$DRY_RUN" = 1 ]; then  # the same steps on a tiny subset
    SIZE=320x180
    REPEATS=1
    WARMUP=0
    VARIANTS=(tiny)
    TESTS=(tests/test_deform_attn.py)
    PYTEST_ARGS+=(-k "fused")
fi

# -- the steps -------------------------------------------------------------------------------------------------
step env 60 "$PY" scripts/device_check.py env --json "$WORK/env.json"
[ -f "$WORK/env.json" ] && cp "$WORK/env.json" "$OUT/env.json"
if command -v nvidia-smi > /dev/null 2>&1; then nvidia-smi >> "$LOG" 2>&1 || true; fi

step cuda_tests 150 "$PY" -m pytest "${PYTEST_ARGS[@]}" "${TESTS[@]}"

step bench_default 90 "$PY" scripts/device_check.py bench-default --device "$DEVICE" --size "$SIZE" \
    --repeats "$REPEATS" --warmup "$WARMUP" --json "$WORK/bench_0_default.json"
i=1
for v in "${VARIANTS[@]}"; do
    step "bench_$v" 90 "$PY" -m core.cli bench --device "$DEVICE" --variants "$v" --size "$SIZE" \
        --repeats "$REPEATS" --warmup "$WARMUP" --json "$WORK/bench_${i}_$v.json"
    i=$((i + 1))
done

# vpp infer on CPU and on the device, compared; whole-process wall times kept for the summary
infer_timed() {  # infer_timed CLIPNAME LABEL DEVICE INPUT OUT.json
    local t0=$SECONDS
    "$PY" -m core.cli infer "$4" --device "$3" --out "$5" || return $?
    local frames
    frames="$("$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(max([len(t.get('segmentations') or []) for t in r] + [0]))" "$5" 2>/dev/null || echo '?')"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$((SECONDS - t0))" "$frames" >> "$WORK/infer_times.tsv"
}
export -f infer_timed  # `timeout` runs programs: the steps call it through bash -c
export PY WORK
IFS=':' read -r -a CLIP_LIST <<< "$CLIPS"
for clip in "${CLIP_LIST[@]}"; do
    if [ ! -e "$clip" ]; then
        say "clip $clip: missing, skipped"
        printf '%s\tskipped\t0\tthe clip %s does not exist\n' "infer_$(basename "$clip")" "$clip" >> "$WORK/steps.tsv"
        continue
    fi
    name="$(basename "$(dirname "$clip")")_$(basename "$clip")"
    name="${name//[^A-Za-z0-9_.-]/_}"
    input="$clip"
    if [ "$DRY_RUN" = 1 ] && [ -d "$clip" ]; then  # the first 4 frames
        input="$WORK/clip_$name"
        mkdir -p "$input"
        find "$clip" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.png' \) | sort | head -n 4 \
            | while IFS= read -r f; do cp "$f" "$input/"; done
    fi
    step "infer_cpu_$name" 120 bash -c 'infer_timed "$@"' _ "$name" cpu cpu "$input" "$WORK/infer_cpu_$name.json"
    step "infer_dev_${DEVICE//:/_}_$name" 120 bash -c 'infer_timed "$@"' _ "$name" device "$DEVICE" "$input" \
        "$WORK/infer_dev_$name.json"
    if [ -f "$WORK/infer_cpu_$name.json" ] && [ -f "$WORK/infer_dev_$name.json" ]; then
        step "compare_$name" 60 "$PY" scripts/device_check.py compare "$WORK/infer_cpu_$name.json" \
            "$WORK/infer_dev_$name.json" --json "$WORK/compare_$name.json"
    else
        printf '%s\tskipped\t0\tno results to compare (see the infer steps)\n' "compare_$name" >> "$WORK/steps.tsv"
    fi
done

# the fused deformable-attention kernel: built from DEFORM_OPS_SRC when it is not importable and that is set
if [ -n "${DEFORM_OPS_SRC:-}" ] && ! "$PY" -c "from core.model.deform_attn import fused_kernel_available as f; import sys; sys.exit(0 if f() else 1)" > /dev/null 2>&1; then
    SITE="${SITE:-$WORK/site}"
    step fused_build 240 env TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" "$PY" -m pip install -q \
        --no-build-isolation --no-deps --no-index --target "$SITE" "$DEFORM_OPS_SRC"
    export PYTHONPATH="$ROOT:$SITE"
fi
step fused_kernel 120 "$PY" scripts/device_check.py fused --device "$DEVICE" --json "$WORK/fused.json"
[ -f "$WORK/fused.json" ] && cp "$WORK/fused.json" "$OUT/fused.json"

# -- summary ---------------------------------------------------------------------------------------------------
rc=0
"$PY" scripts/device_check.py summary "$WORK" "$OUT" || rc=$?
if [ ! -f "$OUT/summary.md" ]; then  # the summary step itself failed: the steps table at least
    { echo "| step | status | seconds | note |"; echo "|---|---|---|---|"
      sed 's/\t/ | /g; s/^/| /; s/$/ |/' "$WORK/steps.tsv"; } > "$OUT/summary.md"
    cat "$OUT/summary.md"
    rc=1
fi
say "done in $((SECONDS - START)) s; results in $OUT"
[ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
exit "$rc"
