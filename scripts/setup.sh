#!/usr/bin/env bash
# Set up a fresh checkout: check Java, create .venv and install the project with its test tools.
#   scripts/setup.sh            core pipeline + test tools
#   scripts/setup.sh --runtime  also the training/inference runtime (CPU build of torch) and megatron-core
#   scripts/setup.sh --airflow  only .venv-airflow: Airflow 3 with the providers the DAGs use, and the project
#                               without its Spark dependencies (as a Composer environment has it), for tests/dags/test_dag.py
#   scripts/setup.sh --xla      only .venv-xla: the runtime on PyTorch/XLA (torch-xla pins its own torch, so it
#                               never shares .venv); about 8 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

# Stop before pip runs out of disk halfway through an install (its error names no size).
need_disk() {  # need_disk GB WHAT
    local free_gb
    free_gb=$(df -Pk . | awk 'NR == 2 {print int($4 / 1048576)}')
    if (( free_gb < $1 )); then
        echo "error: $2 needs about $1 GB free on this disk; $free_gb GB free" >&2
        exit 1
    fi
}

if [[ "${1:-}" == "--airflow" ]]; then
    if [[ ! -x .venv-airflow/bin/python ]]; then
        need_disk 3 ".venv-airflow (2.1 GB installed)"
        "$python" -m venv .venv-airflow
    fi
    .venv-airflow/bin/python -m pip install --quiet --upgrade pip
    # the airflow extra of pyproject.toml (one list); the DAGs import only the pure-Python dataproc/ package
    requirements=$(.venv-airflow/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["airflow"]))') \
        || { echo "error: --airflow needs Python 3.11+ (tomllib)" >&2; exit 1; }
    mapfile -t airflow_requirements <<<"$requirements"
    .venv-airflow/bin/python -m pip install --quiet "pytest>=8" "${airflow_requirements[@]}"
    .venv-airflow/bin/python -m pip install --quiet --no-deps --force-reinstall .
    echo "ready: $(.venv-airflow/bin/python -c 'import airflow; print("airflow", airflow.__version__)')"
    exit 0
fi

if [[ "${1:-}" == "--xla" ]]; then
    # 8.5 GB installed: PyPI's torch 2.9 for Linux is the CUDA build, with 4.3 GB of NVIDIA libraries
    [[ -x .venv-xla/bin/python ]] || need_disk 10 ".venv-xla (torch 2.9 with its CUDA libraries)"
    [[ -x .venv-xla/bin/python ]] || "$python" -m venv .venv-xla
    .venv-xla/bin/python -m pip install --quiet --upgrade pip
    # torchao matched to torch 2.9 (transformers imports torchao whenever it is installed, and a newer
    # torchao fails to import on torch 2.9)
    .venv-xla/bin/python -m pip install --quiet "torch-xla==2.9.0" "torch==2.9.*" "torchao==0.14.1"
    .venv-xla/bin/python -m pip install --quiet -e ".[dev,runtime]" "torchao==0.14.1"
    PJRT_DEVICE=CPU .venv-xla/bin/python -c 'import torch_xla; print("ready: torch_xla", torch_xla.__version__, torch_xla.device())'
    exit 0
fi

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

if [[ ! -x .venv/bin/python ]]; then
    need_disk 4 ".venv (2.6 GB installed with --runtime)"
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
extras="dev"
if [[ "${1:-}" == "--runtime" ]]; then
    # The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
    # megatron-core: its IndexedDataset reads the --formats megatron output in the tests (pure Python
    # on CPU; with torch already installed it pulls only numpy and packaging)
    extras="dev,runtime,megatron"
fi
.venv/bin/python -m pip install --quiet -e ".[$extras]"
# the kernels' machine code and the JVM's classes, cached once here rather than at every job's start
.venv/bin/python scripts/warm_start.py
echo "ready: $(.venv/bin/python -c 'import pyspark; print("pyspark", pyspark.__version__)'), java $java_major"
