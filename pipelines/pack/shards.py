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
from udfs.tfrecord import example_records, open_uri


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

    @staticmethod
    def numpy_dtype(token_dtype: str):
        return np.uint16 if token_dtype == "uint16" else np.int32

    @property
    def np_token_dtype(self):
        return self.numpy_dtype(self.token_dtype)


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
    return example_records({"input_ids": rows.input_ids, "segment_ids": rows.segment_ids,
                            "positions": rows.positions}).tobytes()


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


def gather_documents(batches, token_dtype) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the binary ``ids`` streams of a partition's batches: ``(tokens, lengths)``."""
    width = np.dtype(token_dtype).itemsize
    tokens, lengths = [], []
    for batch in batches:
        ids = batch.column("ids")
        if len(ids) == 0:
            continue
        _, offsets_buf, data_buf = ids.buffers()
        offset_dtype = np.int64 if pa.types.is_large_binary(ids.type) else np.int32
        offsets = np.frombuffer(offsets_buf, dtype=offset_dtype)[ids.offset:ids.offset + len(ids) + 1]
        tokens.append(np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]].view(token_dtype))
        lengths.append(np.diff(offsets).astype(np.int64) // width)
    if not tokens:
        return np.zeros(0, token_dtype), np.zeros(0, np.int64)
    return np.concatenate(tokens), np.concatenate(lengths)


def pack_partition_fn(spec: ShardSpec):
    """The ``mapInArrow`` function of the packing stage."""

    def run(batches):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        index = ctx.partitionId()
        attempt = f"attempt-{ctx.stageId()}-{ctx.attemptNumber()}-{ctx.taskAttemptId()}"
        tokens, lengths = gather_documents(batches, spec.np_token_dtype)
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
