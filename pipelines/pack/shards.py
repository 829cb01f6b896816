"""Write one shard per Spark partition: pack its documents, write Parquet, TFRecord and Megatron files, summarise.

Each packing task owns shard ``k = partitionId``. It builds each file in memory (a shard is
sized to tens of MB), hashes it, writes it to a temporary name unique to the task attempt and
renames it over ``part-k`` (``pipelines.io.uri.put_file``): a retried or speculative attempt
replaces the file instead of adding a second one, and a reader never sees half a file under the
final name. The task returns one small summary row; the driver builds the manifest from those
rows alone.

Bytes are deterministic: the partition's documents arrive sorted by key (then doc id), packing
and the seeded row permutation are pure functions of them, and every writer is byte-stable
(Parquet: fixed writer options, no timestamps; TFRecord: fixed feature order; Megatron: the
documents in arrival order, unpacked).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import PackingMethod
from pipelines.io import uri
from schemas.packed import (DOC_IDS, FEATURE_NAMES, FORMATS, MEGATRON, SHARD_SUMMARY, megatron_index_file,
                            shard_file, shard_schema)
from udfs import megatron
from udfs.packing import PackedRows, next_token_targets, pack, permute_rows
from udfs.tfrecord import example_records


@dataclass(frozen=True)
class ShardSpec:
    """Everything a packing task needs (shipped in its closure)."""

    staging: str
    seq_len: int
    pad_id: int
    token_dtype: str
    method: PackingMethod
    formats: tuple[str, ...]
    shuffle_rows: bool
    seed: int
    compression: str
    row_group_rows: int
    feature_names: str = "default"

    @property
    def packed_formats(self) -> tuple[str, ...]:
        return tuple(f for f in self.formats if f in FORMATS)

    @staticmethod
    def numpy_dtype(token_dtype: str):
        return np.uint16 if token_dtype == "uint16" else np.int32

    @property
    def np_token_dtype(self):
        return self.numpy_dtype(self.token_dtype)


@dataclass(frozen=True)
class Documents:
    """A partition's tokenized documents: their streams concatenated, each one's length and id."""

    tokens: np.ndarray
    lengths: np.ndarray
    doc_ids: np.ndarray

    @classmethod
    def empty(cls, token_dtype) -> Documents:
        return cls(np.zeros(0, token_dtype), np.zeros(0, np.int64), np.zeros(0, np.int64))


def feature_columns(rows: PackedRows, spec: ShardSpec) -> dict[str, np.ndarray]:
    """Every column of the chosen feature names, in order (MaxText's targets derived here)."""
    fields = {"input_ids": rows.input_ids, "segment_ids": rows.segment_ids, "positions": rows.positions}
    if "target_ids" in FEATURE_NAMES[spec.feature_names].values():
        fields["target_ids"], fields["target_segment_ids"] = next_token_targets(rows.input_ids, rows.segment_ids,
                                                                                spec.pad_id)
    return {column: fields[field] for column, field in FEATURE_NAMES[spec.feature_names].items()}


def _list_column(matrix: np.ndarray) -> pa.ListArray:
    rows, width = matrix.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * np.int32(width))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1)))


def parquet_bytes(rows: PackedRows, spec: ShardSpec, doc_ids: tuple[np.ndarray, np.ndarray]) -> bytes:
    values, offsets = doc_ids
    columns = [_list_column(m) for m in feature_columns(rows, spec).values()]
    columns.append(pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, pa.int64())))
    table = pa.Table.from_arrays(columns, schema=shard_schema(spec.token_dtype, spec.feature_names))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=spec.compression, row_group_size=spec.row_group_rows,
                   write_statistics=False, use_dictionary=False, store_schema=True)
    return sink.getvalue()


def tfrecord_bytes(rows: PackedRows, spec: ShardSpec, doc_ids: tuple[np.ndarray, np.ndarray]) -> bytes:
    return example_records({**feature_columns(rows, spec), DOC_IDS: doc_ids}).tobytes()


def empty_rows(spec: ShardSpec) -> PackedRows:
    z = np.zeros((0, spec.seq_len), dtype=np.uint16)
    return PackedRows(z.astype(spec.np_token_dtype), z, z, 0, 0, 0, 0)


def pack_documents(docs: Documents, spec: ShardSpec, index: int) -> PackedRows:
    """Shard ``index``'s rows (seeded permutation by ``(seed, index)``)."""
    if docs.lengths.shape[0] == 0:
        return empty_rows(spec)
    rows = pack(docs.tokens, docs.lengths, spec.seq_len, spec.pad_id, spec.method, spec.np_token_dtype)
    return permute_rows(rows, (spec.seed, index)) if spec.shuffle_rows else rows


def _put(summary: dict, key: str, path: str, data: bytes, attempt: str) -> None:
    uri.put_file(path, data, attempt)
    summary[f"{key}_sha256"] = hashlib.sha256(data).hexdigest()
    summary[f"{key}_bytes"] = len(data)


def write_shard(index: int, docs: Documents, spec: ShardSpec, attempt: str) -> dict:
    """Write shard ``index`` of ``docs`` in every requested format; return its summary row.

    Packed formats hold the documents in rows of ``seq_len``; Megatron files hold them whole,
    one sequence each (its dataset builds samples across documents itself).
    """
    lengths, seq_len = docs.lengths, spec.seq_len
    summary = {field.name: None for field in SHARD_SUMMARY.fields}
    summary.update(shard=index, rows=0, tokens=int(lengths.sum()), padding_tokens=0,
                   documents=int(lengths.shape[0]), documents_split=int((lengths > seq_len).sum()),
                   pieces=int(((lengths + seq_len - 1) // seq_len).sum()), empty=lengths.shape[0] == 0)
    if spec.packed_formats:
        rows = pack_documents(docs, spec, index)
        summary.update(rows=rows.rows, padding_tokens=rows.padding_tokens)
        doc_ids = rows.segment_values(docs.doc_ids)
        for fmt in spec.packed_formats:
            writer = parquet_bytes if fmt == "parquet" else tfrecord_bytes
            _put(summary, fmt, f"{spec.staging}/{shard_file(fmt, index)}", writer(rows, spec, doc_ids), attempt)
    if MEGATRON in spec.formats:
        _put(summary, MEGATRON, f"{spec.staging}/{shard_file(MEGATRON, index)}",
             megatron.data_bytes(docs.tokens, spec.np_token_dtype), attempt)
        _put(summary, "megatron_idx", f"{spec.staging}/{megatron_index_file(index)}",
             megatron.index_bytes(lengths, spec.np_token_dtype), attempt)
    return summary


def gather_documents(batches, token_dtype) -> Documents:
    """Concatenate the binary ``ids`` streams of a partition's batches, with their lengths and doc ids."""
    width = np.dtype(token_dtype).itemsize
    tokens, lengths, doc_ids = [], [], []
    for batch in batches:
        ids = batch.column("ids")
        if len(ids) == 0:
            continue
        _, offsets_buf, data_buf = ids.buffers()
        offset_dtype = np.int64 if pa.types.is_large_binary(ids.type) else np.int32
        offsets = np.frombuffer(offsets_buf, dtype=offset_dtype)[ids.offset:ids.offset + len(ids) + 1]
        tokens.append(np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]].view(token_dtype))
        lengths.append(np.diff(offsets).astype(np.int64) // width)
        doc_ids.append(batch.column("doc_id").to_numpy().astype(np.int64))
    if not tokens:
        return Documents.empty(token_dtype)
    return Documents(np.concatenate(tokens), np.concatenate(lengths), np.concatenate(doc_ids))


def pack_partition_fn(spec: ShardSpec):
    """The ``mapInArrow`` function of the packing stage."""

    def run(batches):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        index = ctx.partitionId()
        attempt = f"attempt-{ctx.stageId()}-{ctx.attemptNumber()}-{ctx.taskAttemptId()}"
        summary = write_shard(index, gather_documents(batches, spec.np_token_dtype), spec, attempt)
        yield pa.RecordBatch.from_pylist([summary], schema=_SUMMARY_ARROW)

    return run


def _arrow_summary_schema() -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(SHARD_SUMMARY)


_SUMMARY_ARROW = _arrow_summary_schema()
