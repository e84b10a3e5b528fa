#!/usr/bin/env bash
# Builds the CPU kernels with AddressSanitizer (a separate build folder; the
# installed extension is untouched) and runs the slow kernel fuzz tests
# against that build. Any out-of-bounds read or write aborts the run with an
# ASan report; the log goes to $ASAN_LOG (default build-asan/fuzz.log).
#
#   bash scripts/asan_fuzz.sh            # 3000 cases per kernel
#   GENRE_SERVE_FUZZ_EXAMPLES=20000 bash scripts/asan_fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build="${ASAN_BUILD_DIR:-build-asan}"
log="${ASAN_LOG:-$build/fuzz.log}"
python=$(command -v python)
GENRE_SERVE_CUDA=OFF GENRE_SERVE_NATIVE_ARCH=ON cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGENRE_SERVE_SANITIZE=address -DPython_EXECUTABLE="$python" -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" \
  > "$build.cmake.log" 2>&1 || { cat "$build.cmake.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" > "$build.build.log" 2>&1 || { cat "$build.build.log"; exit 1; }
so=$(ls "$build"/_C*.so)
[ "$(nm -D "$so" | grep -c __asan_)" -gt 0 ] || { echo "$so is not instrumented"; exit 1; }
libasan=$(g++ -print-file-name=libasan.so)
mkdir -p "$(dirname "$log")"
echo "AddressSanitizer fuzz run: $so, runtime $libasan" | tee "$log"
# detect_leaks=0: CPython itself never frees some allocations at exit.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
# Canary: the preloaded runtime must catch a deliberate heap overflow (a read
# 16 bytes past a malloc'd buffer, through ASan's memcpy interceptor).
canary='import ctypes; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; p = libc.malloc(8); ctypes.string_at(p, 24)'
if LD_PRELOAD="$libasan" "$python" -c "$canary" > "$build/canary.log" 2>&1 \
   || ! grep -q heap-buffer-overflow "$build/canary.log"; then
  echo "AddressSanitizer did not catch the canary overflow: the run would prove nothing" | tee -a "$log"
  cat "$build/canary.log"
  exit 1
fi
echo "canary: AddressSanitizer caught a deliberate heap-buffer-overflow" | tee -a "$log"
LD_PRELOAD="$libasan" GENRE_SERVE_TEST_EXTENSION="$(realpath "$so")" \
  pytest -m "slow or not slow" tests/unit/kernels/test_kernel_fuzz.py -p no:cacheprovider -q -rA 2>&1 | tee -a "$log"
exit "${PIPESTATUS[0]}"
