"""What the Spark stages import from ``udfs`` reaches the workers as a name, not as a kernel.

A function a ``mapInArrow`` closure references is pickled with it. A plain function pickles
as its module and name, and the worker uses the one it imported (and warmed). A Numba
dispatcher pickles by value, bytecode and all, and each worker compiles it again on its first
call: 0.26 s of the signature stage on the bundled sample was ``band_keys`` compiling.
"""

from __future__ import annotations

import ast
import importlib
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
    assert {"compute_signatures", "band_keys", "signature_agreement", "shingle_sets"} <= names


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
