"""Write one shard per Spark partition: pack its documents, write Parquet and TFRecord, summarise.

Each packing task owns shard ``k = partitionId``. It builds each file in memory (a shard is
sized to tens of MB), hashes it, writes it to a temporary name unique to the task attempt and
renames it over ``part-k``: a retried or speculative attempt replaces the file instead of
adding a second one, and a reader never sees half a file under the final name. The task
returns one small summary row; the driver builds the manifest from those rows alone.

Bytes are deterministic: the partition's documents arrive sorted by key, packing and the
seeded row permutation are pure functions of them, and both writers are byte-stable
(Parquet: fixed writer options, no timestamps; TFRecord: fixed feature order).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.packed import SHARD_SUMMARY, shard_file, shard_schema
from udfs.packing import PackedRows, pack, permute_rows
from udfs.tfrecord import encode_example, frame_record, open_uri


@dataclass(frozen=True)
class ShardSpec:
    """Everything a packing task needs (shipped in its closure)."""

    staging: str
    seq_len: int
    pad_id: int
    token_dtype: str
    method: str
    formats: tuple[str, ...]
    shuffle_rows: bool
    seed: int
    compression: str
    row_group_rows: int

    @property
    def np_token_dtype(self):
        return np.uint16 if self.token_dtype == "uint16" else np.int32


def _list_column(matrix: np.ndarray) -> pa.ListArray:
    rows, width = matrix.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * np.int32(width))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1)))


def parquet_bytes(rows: PackedRows, spec: ShardSpec) -> bytes:
    schema = shard_schema(spec.token_dtype)
    table = pa.Table.from_arrays(
        [_list_column(rows.input_ids), _list_column(rows.segment_ids), _list_column(rows.positions)],
        schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=spec.compression, row_group_size=spec.row_group_rows,
                   write_statistics=False, use_dictionary=False, store_schema=True)
    return sink.getvalue()


def tfrecord_bytes(rows: PackedRows) -> bytes:
    ids = rows.input_ids.astype(np.int64)
    seg = rows.segment_ids.astype(np.int64)
    pos = rows.positions.astype(np.int64)
    return b"".join(frame_record(encode_example({"input_ids": ids[r], "segment_ids": seg[r],
                                                 "positions": pos[r]}))
                    for r in range(rows.rows))


def empty_rows(spec: ShardSpec) -> PackedRows:
    z = np.zeros((0, spec.seq_len), dtype=np.uint16)
    return PackedRows(z.astype(spec.np_token_dtype), z, z, 0, 0, 0, 0)


def put_file(final: str, data: bytes, attempt: str) -> None:
    """Write ``data`` under a unique temporary name, then rename it over ``final``."""
    tmp = f"{final}.{attempt}.tmp"
    if "://" in final and not final.startswith("file://"):
        from pyarrow import fs as pafs

        filesystem, inner = pafs.FileSystem.from_uri(final)
        with filesystem.open_output_stream(inner + f".{attempt}.tmp") as fh:
            fh.write(data)
        filesystem.move(inner + f".{attempt}.tmp", inner)
        return
    local_final, local_tmp = final.removeprefix("file://"), tmp.removeprefix("file://")
    os.makedirs(os.path.dirname(local_final), exist_ok=True)
    with open_uri(local_tmp, "wb") as fh:
        fh.write(data)
    os.replace(local_tmp, local_final)


def write_shard(index: int, rows: PackedRows, spec: ShardSpec, attempt: str) -> dict:
    """Write shard ``index`` in every requested format; return its summary row."""
    summary = {"shard": index, "rows": rows.rows, "tokens": rows.tokens,
               "padding_tokens": rows.padding_tokens, "documents": rows.documents,
               "documents_split": rows.documents_split, "pieces": rows.pieces,
               "parquet_sha256": None, "parquet_bytes": None, "tfrecord_sha256": None,
               "tfrecord_bytes": None, "empty": rows.rows == 0}
    for fmt in spec.formats:
        data = parquet_bytes(rows, spec) if fmt == "parquet" else tfrecord_bytes(rows)
        put_file(f"{spec.staging}/{shard_file(fmt, index)}", data, attempt)
        summary[f"{fmt}_sha256"] = hashlib.sha256(data).hexdigest()
        summary[f"{fmt}_bytes"] = len(data)
    return summary


def gather_documents(batches) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the ``ids`` lists of a partition's batches: ``(tokens, lengths)``."""
    tokens, lengths = [], []
    for batch in batches:
        ids = batch.column("ids")
        if len(ids) == 0:
            continue
        offsets = ids.offsets.to_numpy()
        tokens.append(ids.values.to_numpy()[offsets[0]:offsets[-1]])
        lengths.append(np.diff(offsets).astype(np.int64))
    if not tokens:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    return np.concatenate(tokens), np.concatenate(lengths)


def pack_partition_fn(spec: ShardSpec):
    """The ``mapInArrow`` function of the packing stage."""

    def run(batches):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        index = ctx.partitionId()
        attempt = f"attempt-{ctx.stageId()}-{ctx.attemptNumber()}-{ctx.taskAttemptId()}"
        tokens, lengths = gather_documents(batches)
        if lengths.shape[0] == 0:
            rows = empty_rows(spec)
        else:
            rows = pack(tokens, lengths, spec.seq_len, spec.pad_id, spec.method, spec.np_token_dtype)
            if spec.shuffle_rows:
                rows = permute_rows(rows, (spec.seed, index))
        summary = write_shard(index, rows, spec, attempt)
        yield pa.RecordBatch.from_pylist([summary], schema=_SUMMARY_ARROW)

    return run


def _arrow_summary_schema() -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(SHARD_SUMMARY)


_SUMMARY_ARROW = _arrow_summary_schema()
