"""Stage 3: LSH banding into buckets and star-shaped candidate edges.

Each document contributes one ``(band_key, doc_id)`` row per band (its ``band_keys``, computed
by the signature scan; a key is seeded by its band, so it names the bucket alone). The rows are
shuffled by key, so every bucket is whole in one partition, and each partition is grouped by
one NumPy sort (``udfs.lsh.bucket_star_edges``):
a bucket with ``k > 1`` members yields the ``k - 1`` edges ``member → min(bucket)`` (a star),
never the ``k²/2`` pairs; connectivity is all the component pass needs. A partition's rows are
held as two arrays (16 bytes a row), so a huge bucket costs memory in proportion to its size,
not to its pairs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas.enforce import conform
from schemas.tables import BAND_KEYS, DOC_ID, EDGES
from udfs.lsh import bucket_star_edges


def band_rows(signatures: DataFrame) -> DataFrame:
    """``BAND_KEYS`` rows ``(band_key, doc_id)`` for every document in ``signatures``."""
    exploded = signatures.select(DOC_ID, F.explode("band_keys").alias("band_key"))
    return conform(exploded, BAND_KEYS, "band keys")


def candidate_edges(bands: DataFrame) -> DataFrame:
    """Distinct ``EDGES`` ``(src=member, dst=bucket minimum)`` over all non-singleton buckets."""
    names = [f.name for f in EDGES.fields]

    def stars(batches):
        table = pa.Table.from_batches(list(batches))
        if table.num_rows == 0:
            return
        src, dst = bucket_star_edges(table.column("band_key").to_numpy(), table.column(DOC_ID).to_numpy())
        yield pa.RecordBatch.from_arrays([pa.array(src), pa.array(dst)], names=names)

    # Pairs found in buckets of different bands (so in different partitions) meet in distinct().
    return bands.repartition("band_key").mapInArrow(stars, EDGES).distinct()
