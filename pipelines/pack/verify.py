"""Verify a packed output directory: every shard's size, sha256, TFRecord CRCs and contents.

The manifest records ``bytes`` and ``sha256`` of every shard file; a TFRecord additionally
carries a masked CRC-32C of every record's length and data. A shard that fails any check is
reported by name through :class:`udfs.tfrecord.CorruptShardError`, so a training job can
refuse a truncated upload or a flipped bit before it reads a single batch. The files are read
by ``pipelines.io.shards``, the reader the training runtime uses too.
"""

from __future__ import annotations

import numpy as np

from pipelines.io import uri
from pipelines.io.shards import fetch, fixed_rows, read_columns
from schemas.packed import DOC_IDS, FEATURE_NAMES, FEATURES, MEGATRON, load_manifest, shard_schema
from udfs import megatron
from udfs.packing import next_token_targets
from udfs.tfrecord import CorruptShardError, scan_records


def _row_checks(path: str, rows: dict[str, np.ndarray], pad_id: int) -> tuple[int, int]:
    """Structural invariants of packed rows; returns ``(non_padding_tokens, rows)``."""
    ids, seg, pos = rows["input_ids"], rows["segment_ids"], rows["positions"]
    if len(rows[DOC_IDS]) != ids.shape[0] or np.any(rows[DOC_IDS] != (seg.max(axis=1) if seg.size else 0)):
        raise CorruptShardError(path, 0, "doc_ids do not name one document per segment")
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


def _rows(path: str, fmt: str, data: bytes, token_dtype: str, scheme: str, seq_len: int,
          pad_id: int) -> dict[str, np.ndarray]:
    """Every column of a shard checked against the shard schema, as the packed fields plus doc ids per row."""
    schema = shard_schema(token_dtype, scheme)
    columns = read_columns(path, fmt, schema.names, data, schema)
    rows = {name: fixed_rows(path, name, columns[name], seq_len) for name in FEATURE_NAMES[scheme]}
    rows[DOC_IDS] = np.diff(columns[DOC_IDS][1])  # doc ids per row
    return _by_field(path, rows, scheme, pad_id)


def _megatron_checks(path: str, index: bytes, entry: dict, token_dtype: str) -> None:
    """The index parses, describes one sequence per document, and covers the ``.bin`` exactly."""
    try:
        dtype, lengths, pointers, documents = megatron.read_index(index)
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


def verify_shards(manifest_dir: str, deep: bool = True) -> dict:
    """Check every shard listed in ``manifest_dir/manifest.json`` (a local directory or a URI).

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
            path = uri.join(manifest_dir, entry["file"])
            data = fetch(path, entry["bytes"], entry["sha256"])
            if deep:
                rows = _rows(path, fmt, data, manifest["token_dtype"], scheme, seq_len, pad_id)
                tokens, n_rows = (_row_checks(path, rows, pad_id) if entry["rows"]
                                  else (0, len(rows["input_ids"])))
                if (n_rows, tokens) != (entry["rows"], entry["tokens"]):
                    raise CorruptShardError(path, 0, f"holds {n_rows} rows / {tokens} tokens, manifest "
                                                     f"says {entry['rows']} / {entry['tokens']}")
            elif fmt == "tfrecord":
                scan_records(data, path)
            checked[entry["file"]] = len(data)
    for entry in manifest.get(MEGATRON, {}).get("files", []):
        checked[entry["file"]] = len(fetch(uri.join(manifest_dir, entry["file"]), entry["bytes"], entry["sha256"]))
        index_path = uri.join(manifest_dir, entry["idx_file"])
        index = fetch(index_path, entry["idx_bytes"], entry["idx_sha256"])
        checked[entry["idx_file"]] = len(index)
        if deep:
            _megatron_checks(index_path, index, entry, manifest["token_dtype"])
    return {"files": len(checked), "bytes": sum(checked.values()), "deep": deep}
