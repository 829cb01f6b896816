"""``mapInArrow`` as every job calls it: the function runs in a worker whose full collections skip its modules.

A Python worker that has run one task of these jobs holds about a million objects that live as
long as it does: PySpark, pyarrow, NumPy, Numba and the loaded kernels. CPython's full
collection scans every one of them, 100-220 ms each time, and a worker runs one after every
task (PySpark's daemon calls ``gc.collect()`` between tasks) and more whenever a batch makes
many containers. On the 1 GB real-corpus slice each of the two workers spent 1.3-1.7 s of CPU
in full collections that collected nothing (BENCHMARKS.md, "The workers' full collections").

What survives a full collection is the worker's lasting state, so after each one it is moved
to the permanent generation (``gc.freeze()``), which later collections skip: they scan only
what was made since. A frozen object is still freed when its last reference goes; only one that
later dies inside a reference cycle stays until the worker exits, and the worker's lasting
state (modules, kernels, the signature memo) is not replaced that way.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

ArrowTask = Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def map_in_arrow(frame: DataFrame, task: ArrowTask, schema: StructType | str) -> DataFrame:
    """``frame.mapInArrow(task, schema)``, ``task`` run by a worker that freezes what outlives its full collections."""
    return frame.mapInArrow(_in_settled_worker(task), schema)


def _in_settled_worker(task: ArrowTask) -> ArrowTask:
    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        freeze_after_full_collections()
        yield from task(batches)

    return run


def freeze_after_full_collections() -> None:
    """From now on in this process, everything that survives a full collection is frozen (idempotent)."""
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()
