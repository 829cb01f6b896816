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

from schemas.packed import DOC_IDS, FEATURE_NAMES, FEATURES, MEGATRON, load_manifest, shard_schema
from udfs import megatron
from udfs.packing import next_token_targets
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
    if len(rows[DOC_IDS]) != ids.shape[0] or np.any(rows[DOC_IDS] != (seg.max(axis=1) if seg.size else 0)):
        raise CorruptShardError(path, 0, "doc_ids do not name one document per segment")
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


def _by_field(path: str, columns: dict[str, np.ndarray], scheme: str, pad_id: int) -> dict[str, np.ndarray]:
    """The packed fields from a shard's columns (named by ``scheme``); derived columns must match them."""
    names = FEATURE_NAMES[scheme]
    out = {}
    for column, field in names.items():
        out.setdefault(field, columns[column])
    if "target_ids" in out and out["input_ids"].size:
        targets, target_segments = next_token_targets(out["input_ids"], out["segment_ids"], pad_id)
        if not (np.array_equal(out["target_ids"], targets) and np.array_equal(out["target_segment_ids"],
                                                                               target_segments)):
            raise CorruptShardError(path, 0, "targets are not the next tokens of the inputs")
    for column, field in names.items():
        if field in FEATURES and not np.array_equal(columns[column], out[field]):
            raise CorruptShardError(path, 0, f"{column} differs from the other {field} column")
    return {**{f: out[f] for f in FEATURES}, DOC_IDS: columns[DOC_IDS]}


def _parquet_rows(path: str, token_dtype: str, scheme: str, pad_id: int) -> dict[str, np.ndarray]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptShardError(path, 0, f"unreadable Parquet ({exc})") from exc
    if not table.schema.equals(shard_schema(token_dtype, scheme)):
        raise CorruptShardError(path, 0, f"schema {table.schema} is not the shard schema")
    out = {}
    for name in FEATURE_NAMES[scheme]:
        col = table.column(name).combine_chunks()
        flat = col.flatten().to_numpy()
        lengths = set(np.diff(col.offsets.to_numpy()).tolist())
        if len(lengths) > 1:
            raise CorruptShardError(path, 0, f"rows of different lengths {sorted(lengths)[:5]}")
        out[name] = flat.reshape(len(col), -1) if len(col) else flat.reshape(0, 0)
    doc_ids = table.column(DOC_IDS).combine_chunks()
    if doc_ids.null_count or doc_ids.flatten().null_count:
        raise CorruptShardError(path, 0, "null doc ids")
    out[DOC_IDS] = np.diff(doc_ids.offsets.to_numpy()).astype(np.int64)  # doc ids per row
    return _by_field(path, out, scheme, pad_id)


def _tfrecord_rows(path: str, scheme: str, pad_id: int) -> dict[str, np.ndarray]:
    contents, starts, lengths = scan_records(path)
    view = memoryview(contents)
    expected = [*FEATURE_NAMES[scheme], DOC_IDS]
    per = {name: [] for name in expected}
    for s, n in zip(starts.tolist(), lengths.tolist()):
        try:
            example = decode_example(view[s:s + n])
        except ValueError as exc:
            raise CorruptShardError(path, s - 12, f"record is not a valid Example ({exc})") from exc
        if sorted(example) != sorted(expected):
            raise CorruptShardError(path, s - 12, f"record has features {sorted(example)}, expected {sorted(expected)}")
        for name in expected:
            per[name].append(example[name])
    columns = {name: np.stack(v) if v else np.zeros((0, 0), np.int64) for name, v in per.items() if name != DOC_IDS}
    columns[DOC_IDS] = np.array([len(v) for v in per[DOC_IDS]], dtype=np.int64)
    return _by_field(path, columns, scheme, pad_id)


def _megatron_checks(root: str, entry: dict, token_dtype: str) -> None:
    """The index parses, describes one sequence per document, and covers the ``.bin`` exactly."""
    path = os.path.join(root, entry["idx_file"])
    with open(path, "rb") as fh:
        try:
            dtype, lengths, pointers, documents = megatron.read_index(fh.read())
        except ValueError as exc:
            raise CorruptShardError(path, 0, f"not a Megatron index ({exc})") from exc
    width = np.dtype(token_dtype).itemsize
    if dtype != np.dtype(token_dtype) or len(lengths) != entry["documents"] or int(lengths.sum()) != entry["tokens"]:
        raise CorruptShardError(path, 0, f"{len(lengths)} sequences / {int(lengths.sum())} tokens of {dtype}, manifest "
                                         f"says {entry['documents']} / {entry['tokens']} of {token_dtype}")
    if (not np.array_equal(documents, np.arange(len(lengths) + 1))
            or not np.array_equal(pointers, np.concatenate([[0], np.cumsum(lengths[:-1] * width)]).astype(np.int64)[
                :len(lengths)])
            or entry["bytes"] != int(lengths.sum()) * width):
        raise CorruptShardError(path, 0, "sequence pointers or document index do not cover the .bin")


def _check_size(path: str, expected: int) -> int:
    if not os.path.exists(path):
        raise CorruptShardError(path, 0, "missing")
    size = os.path.getsize(path)
    if size != expected:
        kind = "truncated" if size < expected else "longer than recorded"
        raise CorruptShardError(path, size, f"{kind}: {size} bytes, manifest says {expected}")
    return size


def _check_sha256(path: str, expected: str) -> None:
    if file_sha256(path) != expected:
        raise CorruptShardError(path, 0, "sha256 does not match the manifest")


def verify_shards(manifest_dir: str, deep: bool = True) -> dict:
    """Check every shard listed in ``manifest_dir/manifest.json``.

    Always: the file exists, its size and sha256 match the manifest, TFRecord framing and
    both CRCs of every record are intact. With ``deep``: rows decode under the manifest's
    feature names, counts (rows, non-padding tokens) match the manifest, the packed-row
    invariants hold, every row names one document per segment, and Megatron indexes describe
    their ``.bin`` files. Raises :class:`CorruptShardError` naming the first bad file; returns a
    summary otherwise.
    """
    manifest = load_manifest(manifest_dir)
    seq_len, pad_id = manifest["seq_len"], manifest["pad_id"]
    scheme = manifest.get("features", {}).get("scheme", "default")
    checked = {}
    for fmt, entries in manifest["shards"].items():
        for entry in entries:
            path = os.path.join(manifest_dir, entry["file"])
            size = _check_size(path, entry["bytes"])
            rows = None
            if fmt == "tfrecord" and deep:  # framing and CRCs first
                rows = _tfrecord_rows(path, scheme, pad_id)
            elif fmt == "tfrecord":
                scan_records(path)
            _check_sha256(path, entry["sha256"])
            if fmt == "parquet" and deep:
                rows = _parquet_rows(path, manifest["token_dtype"], scheme, pad_id)
            if rows is not None:
                tokens, n_rows = (_row_checks(path, rows, seq_len, pad_id) if entry["rows"]
                                  else (0, len(rows["input_ids"])))
                if (n_rows, tokens) != (entry["rows"], entry["tokens"]):
                    raise CorruptShardError(path, 0, f"holds {n_rows} rows / {tokens} tokens, manifest "
                                                     f"says {entry['rows']} / {entry['tokens']}")
            checked[entry["file"]] = size
    for entry in manifest.get(MEGATRON, {}).get("files", []):
        for name, size_key, sha_key in (("file", "bytes", "sha256"), ("idx_file", "idx_bytes", "idx_sha256")):
            path = os.path.join(manifest_dir, entry[name])
            checked[entry[name]] = _check_size(path, entry[size_key])
            _check_sha256(path, entry[sha_key])
        if deep:
            _megatron_checks(manifest_dir, entry, manifest["token_dtype"])
    return {"files": len(checked), "bytes": sum(checked.values()), "deep": deep}
