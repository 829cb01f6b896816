"""``pipelines.arrow_tasks.map_in_arrow``: a worker's full collections leave its lasting heap frozen."""

from __future__ import annotations

import pyarrow as pa

from pipelines.arrow_tasks import map_in_arrow


def heap_after_full_collection(batches):
    import gc

    for _ in batches:
        pass
    gc.collect()  # as PySpark's daemon does after every task
    frozen, scanned = gc.get_freeze_count(), len(gc.get_objects())
    yield pa.RecordBatch.from_arrays([pa.array([frozen]), pa.array([scanned])], names=["frozen", "scanned"])


def test_a_full_collection_in_a_worker_freezes_what_survives_it(spark):
    rows = map_in_arrow(spark.range(2, numPartitions=2), heap_after_full_collection,
                        "frozen long, scanned long").collect()
    for row in rows:
        # PySpark's worker and pyarrow alone are some 40,000 objects (the dedup kernels' workers
        # hold a million); a later full collection scans only what the task made since.
        assert row["frozen"] > 20_000, row
        assert row["scanned"] < row["frozen"] // 50, row
