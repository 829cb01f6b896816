"""What the Spark stages import from ``udfs`` reaches the workers as a name, not as a kernel.

A function a ``mapInArrow`` closure references is pickled with it. A plain function pickles
as its module and name, and the worker uses the one it imported (and warmed). A Numba
dispatcher pickles by value, bytecode and all, and each worker compiles it again on its first
call: 0.26 s of the signature stage on the bundled sample was ``band_keys`` compiling.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from numba.core.dispatcher import Dispatcher
from pyspark import cloudpickle

ROOT = Path(__file__).resolve().parents[2]


def _imported_from_udfs() -> list[tuple[str, str, str]]:
    """``(importing file, udfs module, name)`` for every ``from udfs.x import name`` in ``pipelines/``."""
    found = []
    for path in sorted((ROOT / "pipelines").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("udfs."):
                found += [(str(path.relative_to(ROOT)), node.module, alias.name) for alias in node.names]
    return found


IMPORTS = _imported_from_udfs()


def test_the_stages_import_kernels_from_udfs():
    names = {name for _, _, name in IMPORTS}
    assert {"compute_signatures", "band_keys", "signature_agreement", "ShingleSetTable"} <= names


@pytest.mark.parametrize(("path", "module", "name"), IMPORTS, ids=[f"{p}:{n}" for p, _, n in IMPORTS])
def test_no_numba_dispatcher_is_imported_into_a_stage(path, module, name):
    value = getattr(importlib.import_module(module), name)
    assert not isinstance(value, Dispatcher), (
        f"{path} imports the Numba kernel {module}.{name}: a Spark task would ship it by value and "
        "every worker would compile it again; call it through a plain Python function")


def test_a_wrapped_kernel_pickles_as_a_name():
    from udfs.lsh import _band_keys, band_keys

    assert len(cloudpickle.dumps(band_keys)) < 100
    assert b"numba" in cloudpickle.dumps(_band_keys)  # the reason for the wrapper


# A new process that warms the kernels and then runs what the LSH stage runs: it may load
# machine code from the cache beside the sources, never compile.
_WORKER_CALLS = """
import numpy as np
from numba.core import event
from udfs.lsh import bucket_pairs, bucket_pairs_against
from udfs.warm import load_kernels

with event.install_recorder("numba:compile") as compiled:
    load_kernels()
    rng = np.random.default_rng(0)
    keys, ids = rng.integers(-2**63, 2**63 - 1, 64, dtype=np.int64) % 8, np.arange(64, dtype=np.int64)
    bucket_pairs(keys, ids, 4, 2)
    bucket_pairs_against(keys[:32], ids[:32], keys[32:], ids[32:], 4, 2)
print(len(compiled.buffer))
"""


def test_a_new_worker_process_compiles_no_kernel_once_the_cache_is_filled():
    """Each kernel is cached on disk, and the warm-up calls it with the types the stages pass:
    a function applied to whole arrays from Python (not a cached kernel of its own) compiles
    again in every worker process."""
    def compiles() -> int:
        run = subprocess.run([sys.executable, "-c", _WORKER_CALLS], cwd=ROOT, capture_output=True, text=True, check=True)
        return int(run.stdout.split()[-1])

    compiles()  # fills the cache on a fresh checkout
    assert compiles() == 0
