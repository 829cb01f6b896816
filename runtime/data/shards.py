"""The shard manifest and reading one verified shard into row-major arrays.

The manifest, shards and tokenizer may live on any storage ``pipelines.io.uri`` reaches
(local paths, ``file://``, ``gs://``, ``s3://``, ``hdfs://``, fsspec schemes): a bucket written
by the Dataproc jobs is read in place, with the same verification as a local directory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.io import uri
from schemas.packed import FEATURES, feature_columns, load_manifest, manifest_file
from udfs.tfrecord import CorruptShardError, decode_example, read_records


@dataclass(frozen=True)
class ShardInfo:
    path: str
    rows: int
    sha256: str
    bytes: int
    columns: tuple[tuple[str, str], ...] = tuple((f, f) for f in FEATURES)  # (field, column): --feature-names


@dataclass(frozen=True)
class PackedManifest:
    """What the runtime needs from ``manifest.json`` (validated by ``schemas.packed``)."""

    root: str
    seq_len: int
    vocab_size: int
    pad_id: int
    eos_id: int
    bos_id: int | None
    tokenizer_path: str
    shards: dict[str, tuple[ShardInfo, ...]]
    mask_id: int | None = None  # encoder manifests: [MASK], and [CLS]/[SEP] framing each document
    cls_id: int | None = None
    sep_id: int | None = None

    @classmethod
    def load(cls, path: str) -> PackedManifest:
        """``path`` (local or URI) is ``manifest.json`` or the directory holding it.

        Raises ``ManifestError`` (a ValueError) for a missing, unreadable, unpublished or invalid manifest.
        """
        raw = load_manifest(path)
        root = uri.parent(manifest_file(path))
        columns = tuple(feature_columns(raw).items())
        shards = {fmt: tuple(ShardInfo(uri.join(root, e["file"]), e["rows"], e["sha256"], e["bytes"], columns)
                             for e in entries)
                  for fmt, entries in raw["shards"].items()}
        return cls(root=root, seq_len=raw["seq_len"], vocab_size=raw["vocab_size"],
                   pad_id=raw["pad_id"], eos_id=raw["eos_id"], bos_id=raw.get("bos_id"),
                   tokenizer_path=uri.join(root, raw["tokenizer"]), shards=shards,
                   mask_id=raw.get("mask_id"), cls_id=raw.get("cls_id"), sep_id=raw.get("sep_id"))

    def shard_list(self, shard_format: str) -> tuple[ShardInfo, ...]:
        if shard_format not in self.shards:
            raise ValueError(f"manifest {self.root!r} has no {shard_format} shards "
                             f"(it has {sorted(self.shards)})")
        return self.shards[shard_format]


def _verified_bytes(info: ShardInfo) -> bytes:
    """The whole shard in one sequential read (from a bucket too), checked before it is decoded."""
    data = uri.read_bytes(info.path)
    if len(data) != info.bytes:
        raise CorruptShardError(info.path, len(data), f"size {len(data)} != manifest {info.bytes}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != info.sha256:
        raise CorruptShardError(info.path, 0, f"sha256 {digest} != manifest {info.sha256}")
    return data


def _rows_from_parquet(data: bytes | None, info: ShardInfo, seq_len: int) -> dict[str, np.ndarray]:
    columns = dict(info.columns)
    names = [columns[name] for name in FEATURES]
    if data is not None:
        table = pq.read_table(pa.BufferReader(data), columns=names)
    else:  # unverified: Parquet reads only the column chunks it needs (ranged reads on a bucket)
        filesystem, inner = uri.resolve(info.path)
        table = pq.read_table(inner, columns=names, filesystem=filesystem)
    out = {}
    for name in FEATURES:
        column = table.column(columns[name]).combine_chunks()
        if table.num_rows and not pc.all(pc.equal(pc.list_value_length(column), seq_len)).as_py():
            raise CorruptShardError(info.path, 0, f"a {name} row is not {seq_len} long")
        out[name] = column.values.to_numpy().reshape(table.num_rows, seq_len)
    return out


def _rows_from_tfrecord(info: ShardInfo, seq_len: int) -> dict[str, np.ndarray]:
    examples = [decode_example(record) for record in read_records(info.path)]
    columns = dict(info.columns)
    out = {}
    for name in FEATURES:
        values = [ex[columns[name]] for ex in examples]
        if any(v.shape != (seq_len,) for v in values):
            raise CorruptShardError(info.path, 0, f"a {name} row is not {seq_len} long")
        out[name] = np.stack(values) if values else np.zeros((0, seq_len), np.int64)
    return out


def read_shard(info: ShardInfo, shard_format: str, seq_len: int, verify: bool) -> dict[str, np.ndarray]:
    """``{feature: (rows, seq_len) array}`` for one shard, checked against the manifest.

    With ``verify`` the sha256 is computed over the bytes that are then decoded, so a shard
    is never trained on unless it is exactly the one the pack job wrote.
    """
    data = _verified_bytes(info) if verify else None
    if shard_format == "parquet":
        rows = _rows_from_parquet(data, info, seq_len)
    else:  # TFRecord framing CRCs are checked by read_records on every read
        rows = _rows_from_tfrecord(info, seq_len)
    if rows["input_ids"].shape[0] != info.rows:
        raise CorruptShardError(info.path, 0, f"{rows['input_ids'].shape[0]} rows, manifest says {info.rows}")
    return rows
