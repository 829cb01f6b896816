"""Verify a packed output directory: every shard's size, sha256, TFRecord CRCs and contents.

The manifest records ``bytes`` and ``sha256`` of every shard file; a TFRecord additionally
carries a masked CRC-32C of every record's length and data. A shard that fails any check is
reported by name through :class:`udfs.tfrecord.CorruptShardError`, so a training job can
refuse a truncated upload or a flipped bit before it reads a single batch.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.packed import FEATURES, load_manifest, shard_schema
from udfs.tfrecord import CorruptShardError, decode_example, scan_records

_CHUNK = 8 * 2**20


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _row_checks(path: str, rows: dict[str, np.ndarray], seq_len: int, pad_id: int) -> tuple[int, int]:
    """Structural invariants of packed rows; returns ``(non_padding_tokens, rows)``."""
    ids, seg, pos = rows["input_ids"], rows["segment_ids"], rows["positions"]
    if ids.ndim != 2 or ids.shape[1] != seq_len or seg.shape != ids.shape or pos.shape != ids.shape:
        raise CorruptShardError(path, 0, f"rows are not all {seq_len} tokens long")
    pad = seg == 0
    if np.any(ids[pad] != pad_id) or np.any(pos[pad] != 0):
        raise CorruptShardError(path, 0, "padding slots hold tokens or positions")
    # padding only at the end, segment ids 1..k in order, positions restart with each segment
    if np.any(pad[:, :-1] & ~pad[:, 1:]):
        raise CorruptShardError(path, 0, "padding is not at the end of a row")
    step = np.diff(seg.astype(np.int64), axis=1)
    if np.any((step != 0) & (step != 1) & ~pad[:, 1:]) or np.any(seg[:, 0] != 1):
        raise CorruptShardError(path, 0, "segment ids do not count 1..k")
    starts = np.ones_like(pad)
    starts[:, 1:] = step != 0
    expected = np.zeros(pos.shape, dtype=np.int64)
    flat_starts = starts.ravel()
    idx = np.arange(flat_starts.size)
    last_start = np.maximum.accumulate(np.where(flat_starts, idx, 0))
    expected.ravel()[:] = idx - last_start
    expected[pad] = 0
    if np.any(pos != expected):
        raise CorruptShardError(path, 0, "positions do not count within segments")
    return int((~pad).sum()), ids.shape[0]


def _parquet_rows(path: str, token_dtype: str) -> dict[str, np.ndarray]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptShardError(path, 0, f"unreadable Parquet ({exc})") from exc
    if not table.schema.equals(shard_schema(token_dtype)):
        raise CorruptShardError(path, 0, f"schema {table.schema} is not the shard schema")
    out = {}
    for name in FEATURES:
        col = table.column(name).combine_chunks()
        flat = col.flatten().to_numpy()
        lengths = set(np.diff(col.offsets.to_numpy()).tolist())
        if len(lengths) > 1:
            raise CorruptShardError(path, 0, f"rows of different lengths {sorted(lengths)[:5]}")
        out[name] = flat.reshape(len(col), -1) if len(col) else flat.reshape(0, 0)
    return out


def _tfrecord_rows(path: str) -> dict[str, np.ndarray]:
    contents, starts, lengths = scan_records(path)
    view = memoryview(contents)
    per = {name: [] for name in FEATURES}
    for s, n in zip(starts.tolist(), lengths.tolist()):
        try:
            example = decode_example(view[s:s + n])
        except ValueError as exc:
            raise CorruptShardError(path, s - 12, f"record is not a valid Example ({exc})") from exc
        for name in FEATURES:
            if name not in example:
                raise CorruptShardError(path, s - 12, f"record lacks feature {name!r}")
            per[name].append(example[name])
    return {name: np.stack(v) if v else np.zeros((0, 0), np.int64) for name, v in per.items()}


def verify_shards(manifest_dir: str, deep: bool = True) -> dict:
    """Check every shard listed in ``manifest_dir/manifest.json``.

    Always: the file exists, its size and sha256 match the manifest, TFRecord framing and
    both CRCs of every record are intact. With ``deep``: rows decode, counts (rows, non-padding
    tokens) match the manifest, and the packed-row invariants hold. Raises
    :class:`CorruptShardError` naming the first bad file; returns a summary otherwise.
    """
    manifest = load_manifest(manifest_dir)
    seq_len, pad_id = manifest["seq_len"], manifest["pad_id"]
    checked = {}
    for fmt, entries in manifest["shards"].items():
        for entry in entries:
            path = os.path.join(manifest_dir, entry["file"])
            if not os.path.exists(path):
                raise CorruptShardError(path, 0, "missing")
            size = os.path.getsize(path)
            if size != entry["bytes"]:
                kind = "truncated" if size < entry["bytes"] else "longer than recorded"
                raise CorruptShardError(path, size, f"{kind}: {size} bytes, manifest says {entry['bytes']}")
            if fmt == "tfrecord":
                rows = _tfrecord_rows(path) if deep else None  # framing and CRCs first
                if not deep:
                    scan_records(path)
            if file_sha256(path) != entry["sha256"]:
                raise CorruptShardError(path, 0, "sha256 does not match the manifest")
            if fmt == "parquet":
                rows = _parquet_rows(path, manifest["token_dtype"]) if deep else None
            if rows is not None:
                tokens, n_rows = (_row_checks(path, rows, seq_len, pad_id) if entry["rows"]
                                  else (0, len(rows["input_ids"])))
                if (n_rows, tokens) != (entry["rows"], entry["tokens"]):
                    raise CorruptShardError(path, 0, f"holds {n_rows} rows / {tokens} tokens, manifest "
                                                     f"says {entry['rows']} / {entry['tokens']}")
            checked[entry["file"]] = size
    return {"files": len(checked), "bytes": sum(checked.values()), "deep": deep}
