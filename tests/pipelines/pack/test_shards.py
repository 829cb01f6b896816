"""Shard writers: Parquet and TFRecord bytes of the same packed rows, and feature naming (no Spark)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.config import PackingMethod
from pipelines.pack.shards import ShardSpec, parquet_bytes, tfrecord_bytes
from schemas.packed import shard_schema
from tests.conftest import random_documents as _docs
from udfs.packing import pack
from udfs.tfrecord import decode_example


def _spec(dtype: str) -> ShardSpec:
    return ShardSpec(staging="", seq_len=16, pad_id=0, token_dtype=dtype, method=PackingMethod.BEST_FIT,
                     formats=("parquet", "tfrecord"), shuffle_rows=True, seed=0, compression="zstd",
                     row_group_rows=4)


@pytest.mark.parametrize("dtype,high", [("uint16", 65535), ("int32", 200_000)])
def test_parquet_and_tfrecord_hold_the_same_rows(dtype, high):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 30)
    tokens = rng.integers(0, high, int(lengths.sum())).astype(np.int32)
    tokens[0] = high
    np_dtype = np.uint16 if dtype == "uint16" else np.int32
    rows = pack(tokens, lengths, 16, 0, PackingMethod.BEST_FIT, np_dtype)
    doc_ids = rows.segment_values(np.arange(len(lengths), dtype=np.int64) * 7 - 50)
    table = pq.read_table(io.BytesIO(parquet_bytes(rows, _spec(dtype), doc_ids)))
    assert table.schema.equals(shard_schema(dtype))
    assert parquet_bytes(rows, _spec(dtype), doc_ids) == parquet_bytes(rows, _spec(dtype), doc_ids)
    data, records = tfrecord_bytes(rows, _spec(dtype), doc_ids), []
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 8], "little")
        records.append(decode_example(data[pos + 12:pos + 12 + n]))
        pos += n + 16
    assert len(records) == table.num_rows == rows.rows
    for name in ("input_ids", "segment_ids", "positions"):
        parquet_rows = np.array(table.column(name).to_pylist())
        assert np.array_equal(parquet_rows, np.stack([r[name] for r in records]))
    assert int(np.array(table.column("input_ids").to_pylist()).max()) == high
    assert table.column("doc_ids").to_pylist() == [r["doc_ids"].tolist() for r in records]
    assert [len(d) for d in table.column("doc_ids").to_pylist()] == [int(s.max()) for s in rows.segment_ids]


@pytest.mark.parametrize("scheme,columns", [
    ("default", ["input_ids", "segment_ids", "positions"]),
    ("seqio", ["targets", "targets_segment_ids", "targets_positions"]),
    ("maxtext", ["inputs", "inputs_segmentation", "inputs_position", "targets", "targets_segmentation",
                 "targets_position"]),
])
def test_feature_names_name_the_shard_columns(scheme, columns):
    rows = pack(*_docs(2, 50, 16), 16, 0, PackingMethod.BEST_FIT, np.uint16)
    spec = dataclasses.replace(_spec("uint16"), feature_names=scheme)
    table = pq.read_table(io.BytesIO(parquet_bytes(rows, spec, rows.segment_values(np.arange(50)))))
    assert table.column_names == [*columns, "doc_ids"]
    assert table.schema.equals(shard_schema("uint16", scheme))
    first = np.array(table.column(columns[0]).to_pylist())
    assert np.array_equal(first, rows.input_ids)
