#!/usr/bin/env bash
# Set up a fresh checkout: check Java, create .venv and install the project with its test tools.
#   scripts/setup.sh            core pipeline + test tools
#   scripts/setup.sh --runtime  also the training/inference runtime (CPU build of torch)
#   scripts/setup.sh --xla      a second environment, .venv-xla: the runtime on PyTorch/XLA (torch-xla
#                               pins its own torch, so it never shares .venv); about 8 minutes
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null 2>&1; then
    echo "error: Java not found. Spark 4 needs Java 17 or newer:" >&2
    echo "       apt-get install openjdk-17-jre-headless   (or set JAVA_HOME and PATH)" >&2
    exit 1
fi
java_major=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}')
if [[ -z "$java_major" || "$java_major" -lt 17 ]]; then
    echo "error: Java $java_major found; Spark 4 needs Java 17 or newer (apt-get install openjdk-17-jre-headless)" >&2
    exit 1
fi

python=${PYTHON:-python3}
if [[ "${1:-}" == "--xla" ]]; then
    [[ -x .venv-xla/bin/python ]] || "$python" -m venv .venv-xla
    .venv-xla/bin/python -m pip install --quiet --upgrade pip
    .venv-xla/bin/python -m pip install --quiet "torch-xla==2.9.0" "torch==2.9.*"
    .venv-xla/bin/python -m pip install --quiet -e ".[dev,runtime]"
    PJRT_DEVICE=CPU .venv-xla/bin/python -c 'import torch_xla; print("ready: torch_xla", torch_xla.__version__, torch_xla.device())'
    exit 0
fi
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
extras="dev"
if [[ "${1:-}" == "--runtime" ]]; then
    # The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
    extras="dev,runtime"
fi
.venv/bin/python -m pip install --quiet -e ".[$extras]"
echo "ready: $(.venv/bin/python -c 'import pyspark; print("pyspark", pyspark.__version__)'), java $java_major"
