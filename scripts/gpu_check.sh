#!/usr/bin/env bash
# One call on a lent GPU machine (see ../shared and the device tool): builds the
# extension with CUDA for that machine's Python, runs the kernel tests (the
# CUDA ones included), the CUDA kernel benchmark, an A/B of the small-batch
# latency against a baseline build (BASELINE_SRC: a source tree of the commit
# to compare with, e.g. `git archive HEAD~1`), and compute-sanitizer's memcheck
# and racecheck on a small call. Logs and the benchmark JSON go to OUT.
#
#   OUT=/tmp/gpu BASELINE_SRC=.gpu_baseline bash scripts/gpu_check.sh
#   OUT=/tmp/gpu BENCH_ONLY_ARGS="--topk-sizes 1x100000x64" bash scripts/gpu_check.sh   # build, then that benchmark only
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis
PY=$(command -v python3)
step() { echo; echo "=== $* ($(date +%T))"; }

build() {  # build SRC SITE: the extension with CUDA, and the package beside it, under SITE
    local src=$1 site=$2 b=/tmp/build_$(basename "$2")
    cmake -S "$src" -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGENRE_SERVE_CUDA=ON \
        -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$PY" >"$b.log" 2>&1 &&
        cmake --build "$b" -j "$(nproc)" >>"$b.log" 2>&1 &&
        mkdir -p "$site" && cp -r "$src/genre_serve" "$site/" && cp "$b"/_C*.so "$site/genre_serve/"
    local rc=$?
    tail -3 "$b.log"
    return $rc
}

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/machine.txt"
"$PY" -c 'import torch, numpy; print("torch", torch.__version__, "cuda", torch.version.cuda, "numpy", numpy.__version__)' | tee -a "$OUT/machine.txt"
nvcc --version | tail -2 | tee -a "$OUT/machine.txt"

step "build (this tree)"
build "$REPO" /tmp/site_new || { cp /tmp/build_site_new.log "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
export PYTHONPATH=/tmp/site_new
(cd /tmp && "$PY" -c 'import genre_serve.kernels as k; print("CUDA built:", k.BUILT_WITH_CUDA, "GPU:", k.HAS_CUDA)')
(cd /tmp && "$PY" -c 'from genre_serve import _C; print("cuBLAS found without torch:", _C.cuda_gemm_available())')
(cd /tmp && "$PY" -c 'import torch; from genre_serve import _C; print("cuBLAS found with torch loaded:", _C.cuda_gemm_available())')

if [ -n "${BENCH_ONLY_ARGS:-}" ]; then  # e.g. BENCH_ONLY_ARGS="--topk-sizes 1x100000x64,2x100000x64"
    step "benchmark only: $BENCH_ONLY_ARGS"
    # shellcheck disable=SC2086
    (cd /tmp && timeout 300 "$PY" "$REPO/benchmarks/bench_kernels_cuda.py" --json "$OUT/bench_kernels_cuda.json" \
        $BENCH_ONLY_ARGS 2>&1 | tee "$OUT/bench.log" | grep -v "^  ")
    exit 0
fi

step "kernel tests"
(cd /tmp && timeout 240 "$PY" -m pytest -c "$REPO/pyproject.toml" --rootdir "$REPO" -p no:cacheprovider -q \
    "$REPO/tests/unit/kernels" 2>&1 | tee "$OUT/pytest.log" | tail -25)

step "benchmark"
(cd /tmp && timeout 300 "$PY" "$REPO/benchmarks/bench_kernels_cuda.py" --json "$OUT/bench_kernels_cuda.json" \
    2>&1 | tee "$OUT/bench.log" | grep -v "^  ")

if [ -n "${BASELINE_SRC:-}" ] && [ -d "$BASELINE_SRC" ]; then
    step "A/B against the baseline build, small batches"
    if build "$(cd "$BASELINE_SRC" && pwd)" /tmp/site_old; then
        for round in 1 2; do
            for site in new old; do
                echo "--- $site (round $round)"
                (cd /tmp && PYTHONPATH=/tmp/site_$site timeout 60 "$PY" "$REPO/benchmarks/bench_kernels_cuda.py" \
                    --repeats 30 --topk-sizes 1x9742x64,1x100000x64,16x100000x64,64x100000x64 --cross-sizes 64x100x64 \
                    --json "/tmp/ab_${site}_$round.json" 2>&1 | grep -E "^  ")
            done
        done 2>&1 | tee "$OUT/ab.log"
    fi
fi

step "compute-sanitizer"
cat >/tmp/small_call.py <<'PYEOF'
import ctypes, glob, os, sys
import numpy as np
from genre_serve import _C
from genre_serve.kernels import cross_features, fused_topk
# cuBLAS from the pip wheels beside torch, without torch (heavy under the sanitizer).
for lib in sorted(glob.glob(os.path.join(sys.prefix, "lib/python3*/site-packages/nvidia/**/libcublas.so.*"), recursive=True)):
    try:
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        break
    except OSError:
        pass
print("cuBLAS:", _C.cuda_gemm_available())
rng = np.random.default_rng(0)
u, i = rng.standard_normal((3, 16), np.float32), rng.standard_normal((20_000, 16), np.float32)
ex = [rng.integers(0, 20_000, 50) for _ in range(3)]
fused_topk(u, i, 100, user_ct=u, item_ct=i, alpha=0.5, exclude=ex, device="cuda")
ub = rng.standard_normal((20, 16), np.float32)
fused_topk(ub, i, 100, user_ct=ub, item_ct=i, alpha=0.5, exclude=[rng.integers(0, 20_000, 50) for _ in range(20)], device="cuda")
cross_features(u, i, rng.integers(-1, 20_000, (3, 7)), scores=rng.standard_normal((3, 7)).astype(np.float32), device="cuda")
print("small call ok")
PYEOF
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck; do
    (cd /tmp && timeout 120 "${SANITIZER:-compute-sanitizer}" --tool $tool --error-exitcode 9 "$PY" /tmp/small_call.py 2>&1 | tail -4)
    echo "compute-sanitizer $tool rc=${PIPESTATUS[0]}"
done 2>&1 | tee "$OUT/sanitizer.log"

step "summary"
grep -E "passed|failed|error" "$OUT/pytest.log" | tail -3
