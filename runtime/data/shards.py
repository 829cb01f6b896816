"""The shard manifest and reading one verified shard into row-major arrays.

The manifest, shards and tokenizer may live on any storage ``pipelines.io.uri`` reaches
(local paths, ``file://``, ``gs://``, ``s3://``, ``hdfs://``, fsspec schemes): a bucket written
by the Dataproc jobs is read in place, with the same verification as a local directory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.io import uri
from pipelines.io.shards import fetch, fixed_rows, read_columns
from schemas.packed import FEATURES, feature_columns, load_manifest, manifest_file
from udfs.tfrecord import CorruptShardError


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


def read_shard(info: ShardInfo, shard_format: str, seq_len: int, verify: bool) -> dict[str, np.ndarray]:
    """``{feature: (rows, seq_len) array}`` for one shard, checked against the manifest.

    With ``verify`` the sha256 is computed over the bytes that are then decoded, so a shard
    is never trained on unless it is exactly the one the pack job wrote (``pipelines.io.shards``).
    """
    data = fetch(info.path, info.bytes, info.sha256) if verify else None
    columns = dict(info.columns)
    read = read_columns(info.path, shard_format, [columns[name] for name in FEATURES], data)
    rows = {name: fixed_rows(info.path, columns[name], read[columns[name]], seq_len) for name in FEATURES}
    if rows["input_ids"].shape[0] != info.rows:
        raise CorruptShardError(info.path, 0, f"{rows['input_ids'].shape[0]} rows, manifest says {info.rows}")
    return rows
