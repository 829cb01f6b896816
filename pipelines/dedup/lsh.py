"""Stage 3: LSH banding into buckets and the candidate pairs of each bucket.

Each document contributes one ``(band_key, doc_id)`` pair per band (its ``band_keys``, computed
by the signature scan; a key is seeded by its band, so it names the bucket alone). Pairs are
sent to part ``key mod parts`` in packed blocks (``BAND_KEY_BLOCKS``) — a few thousand rows
through the shuffle instead of one row per pair — so every bucket is whole in one partition
(each part in a partition of its own: blocks carry a tag that hash partitioning sends there),
and each partition is grouped by one NumPy sort (``udfs.lsh.bucket_pairs``): all pairs of a
small bucket, a bounded number of random partners per member in a large one. Candidates do
not depend on a bucket's centre, so two duplicates are compared even when both differ from
the bucket's smallest id. A partition's pairs are held as two arrays (16 bytes a pair), so a
huge bucket costs memory in proportion to its size times ``bucket_neighbours``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas.dedup import BAND_KEY_BLOCKS, DOC_ID, EDGES
from pipelines.arrow_tasks import map_in_arrow
from pipelines.config import LshConfig
from pipelines.spark_session import FittedSettings
from udfs.lsh import bucket_pairs, bucket_pairs_against, partition_tags, split_by_part

_INDEXED = "_indexed"
# A (band key, doc_id) pair is two int64s. A part is grouped in one Python worker, whose sort
# holds about six times the part's pairs at its peak: 32 MB of pairs stay near 200 MB.
PAIR_BYTES = 16
PART_BYTES = 32 * 2**20
# ... and a part of fewer pairs is not split over the cores: a quarter of a million pairs are grouped
# in tens of milliseconds, while a core's first Python task waits about a second for its worker.
SPREAD_BYTES = 4 * 2**20


def lsh_parts(settings: FittedSettings, documents: int, bands: int) -> int:
    """Parts for the ``documents * bands`` pairs: one per ``PART_BYTES`` of them, at least one per
    core once each gets ``SPREAD_BYTES``.

    Parts are a repartition to a fixed count, which adaptive execution does not coalesce, so
    every part is a task: a count sized to the data rather than Spark's 200.
    """
    return settings.partitions(documents * bands * PAIR_BYTES, PART_BYTES, SPREAD_BYTES)


def band_blocks(signatures: DataFrame, parts: int) -> DataFrame:
    """``BAND_KEY_BLOCKS`` holding every ``(band_key, doc_id)`` pair of ``signatures``."""
    names = BAND_KEY_BLOCKS.fieldNames()
    tags = partition_tags(parts)  # part p's tag, which repartition(parts, "part") sends to partition p

    def to_blocks(batches):
        for batch in batches:
            lists = batch.column(1)
            keys = lists.flatten().to_numpy()
            ids = np.repeat(batch.column(0).to_numpy(), pc.list_value_length(lists).to_numpy(zero_copy_only=False))
            blocks = split_by_part(keys, ids, parts)
            yield pa.RecordBatch.from_arrays([
                pa.array([tags[p] for p, _, _ in blocks], pa.int32()),
                pa.array([k.tobytes() for _, k, _ in blocks], pa.binary()),
                pa.array([i.tobytes() for _, _, i in blocks], pa.binary()),
            ], names=names)

    return map_in_arrow(signatures.select(DOC_ID, "band_keys"), to_blocks, BAND_KEY_BLOCKS)


def candidate_edges(blocks: DataFrame, parts: int, cfg: LshConfig, indexed: DataFrame | None = None) -> DataFrame:
    """Distinct candidate ``EDGES`` ``(src > dst)`` over all non-singleton buckets.

    ``indexed``: ``BAND_KEY_BLOCKS`` of an index of earlier runs (``pipelines.dedup.against``).
    Each bucket of ``blocks`` then also holds its indexed members, and pairs of two indexed
    documents are left out (``udfs.lsh.bucket_pairs_against``): the candidates of one run over
    both corpora that involve a document of ``blocks``.
    """
    names = EDGES.fieldNames()
    all_pairs_up_to, neighbours = cfg.all_pairs_bucket, cfg.bucket_neighbours
    if indexed is not None:
        blocks = blocks.withColumn(_INDEXED, F.lit(False)).unionByName(indexed.withColumn(_INDEXED, F.lit(True)))

    def stars(batches):
        rows = {False: ([], []), True: ([], [])}  # keyed by "indexed"
        for batch in batches:
            flags = batch.column(3).to_pylist() if batch.num_columns > 3 else [False] * batch.num_rows
            for key_bytes, id_bytes, flag in zip(batch.column(1).to_pylist(), batch.column(2).to_pylist(), flags):
                rows[flag][0].append(np.frombuffer(key_bytes, np.int64))
                rows[flag][1].append(np.frombuffer(id_bytes, np.int64))
        (keys, ids), (old_keys, old_ids) = rows[False], rows[True]
        if not keys:
            return
        if old_keys:
            src, dst = bucket_pairs_against(np.concatenate(keys), np.concatenate(ids), np.concatenate(old_keys),
                                            np.concatenate(old_ids), all_pairs_up_to, neighbours)
        else:
            src, dst = bucket_pairs(np.concatenate(keys), np.concatenate(ids), all_pairs_up_to, neighbours)
        yield pa.RecordBatch.from_arrays([pa.array(src), pa.array(dst)], names=names)

    # Pairs found in buckets of different bands (so in different partitions) meet in distinct().
    return map_in_arrow(blocks.repartition(parts, "part"), stars, EDGES).distinct()
