"""Stage 3: LSH banding into buckets and star-shaped candidate edges.

Each document contributes one ``(band, band_key)`` row per band. A bucket with ``k > 1``
members yields the ``k - 1`` edges ``member → min(bucket)`` (a star), never the ``k²/2``
pairs: connectivity is all the component pass needs. Singleton buckets yield nothing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from schemas.tables import BAND_KEYS, DOC_ID
from udfs.arrow_buffers import rows_from_binary
from udfs.lsh import band_keys


def band_rows(signatures: DataFrame, num_perm: int, bands: int, rows: int) -> DataFrame:
    """``BAND_KEYS`` rows for every document in ``signatures`` (``doc_id``, ``signature``)."""
    names = [f.name for f in BAND_KEYS.fields]

    def to_bands(batches):
        for batch in batches:
            ids = batch.column(0).to_numpy()
            keys = band_keys(rows_from_binary(batch.column(1), np.uint32, num_perm), bands, rows)
            band_index = np.tile(np.arange(bands, dtype=np.int32), len(ids))
            yield pa.RecordBatch.from_arrays(
                [pa.array(band_index), pa.array(keys.reshape(-1)), pa.array(np.repeat(ids, bands))],
                names=names)

    return signatures.select(DOC_ID, "signature").mapInArrow(to_bands, BAND_KEYS)


def candidate_edges(bands: DataFrame) -> DataFrame:
    """Distinct ``EDGES`` ``(src=member, dst=bucket minimum)`` over all non-singleton buckets.

    One shuffle of the band rows: a window over each bucket gives every member the bucket's
    minimum, and the bucket minimum itself (and every singleton) drops out as a self-edge. A
    bucket's rows are streamed through a spillable buffer, so a huge bucket costs one long
    task, not memory.
    """
    bucket = Window.partitionBy("band", "band_key")
    return (bands.select(DOC_ID, F.min(DOC_ID).over(bucket).alias("dst"))
            .filter(F.col(DOC_ID) != F.col("dst"))
            .select(F.col(DOC_ID).alias("src"), "dst")
            .distinct())
