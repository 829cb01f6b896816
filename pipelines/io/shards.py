"""Reading packed shards back: the one reader of the pack job's verifier and of the training runtime.

Shards are read through ``pipelines.io.uri`` (local paths and any URI). :func:`fetch` reads a
file whole in one sequential read and checks it against its manifest entry, so the sha256 is
computed over exactly the bytes that are then decoded: nothing is used that differs from what
the pack job wrote. :func:`read_columns` decodes a Parquet or TFRecord shard (a TFRecord's
framing and both CRCs of every record are checked on every read) into one
``(values, row_offsets)`` pair per column, row ``r`` being ``values[row_offsets[r]:row_offsets[r + 1]]``
(the layout ``udfs.tfrecord.example_records`` writes from); :func:`fixed_rows` makes a column
of equal-length rows one 2-D array. Every failure is a :class:`CorruptShardError` naming the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io import uri
from udfs.tfrecord import HEADER_BYTES, CorruptShardError, decode_example, scan_records

Ragged = tuple[np.ndarray, np.ndarray]  # (values, row_offsets)


def fetch(path: str, size: int, sha256: str) -> bytes:
    """The whole file, once it is known to exist with the manifest's size and sha256."""
    try:
        data = uri.read_bytes(path)
    except FileNotFoundError:
        raise CorruptShardError(path, 0, "missing") from None
    if len(data) != size:
        kind = "truncated" if len(data) < size else "longer than recorded"
        raise CorruptShardError(path, len(data), f"{kind}: {len(data)} bytes, manifest says {size}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise CorruptShardError(path, 0, f"sha256 {digest} does not match the manifest's {sha256}")
    return data


def read_columns(path: str, fmt: str, names: Sequence[str], data: bytes | None = None,
                 schema: pa.Schema | None = None) -> dict[str, Ragged]:
    """The list columns ``names`` of a ``parquet`` or ``tfrecord`` shard, none holding nulls.

    ``data``: the shard's bytes from :func:`fetch`; without them the file is read here (Parquet
    then reads only those columns' chunks: ranged reads on a bucket). ``schema``: the shard's
    whole schema, checked (a Parquet file must have exactly it, every TFRecord record exactly its
    column names).
    """
    if fmt == "parquet":
        return _parquet_columns(path, names, data, schema)
    return _tfrecord_columns(path, names, data if data is not None else uri.read_bytes(path), schema)


def fixed_rows(path: str, name: str, column: Ragged, width: int) -> np.ndarray:
    """``(rows, width)``: a column whose every row holds ``width`` values."""
    values, offsets = column
    if np.any(np.diff(offsets) != width):
        raise CorruptShardError(path, 0, f"a {name} row is not {width} long")
    return values.reshape(len(offsets) - 1, width)


def _parquet_columns(path: str, names: Sequence[str], data: bytes | None, schema: pa.Schema | None
                     ) -> dict[str, Ragged]:
    columns = None if schema is not None else list(names)  # a whole-schema check reads every column
    try:
        if data is not None:
            table = pq.read_table(pa.BufferReader(data), columns=columns)
        else:
            filesystem, inner = uri.resolve(path)
            table = pq.read_table(inner, columns=columns, filesystem=filesystem)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptShardError(path, 0, f"unreadable Parquet ({exc})") from exc
    if schema is not None and not table.schema.equals(schema):
        raise CorruptShardError(path, 0, f"schema {table.schema} is not the shard schema")
    out = {}
    for name in names:
        column = table.column(name).combine_chunks()
        values = column.flatten()
        if column.null_count or values.null_count:
            raise CorruptShardError(path, 0, f"null values in {name}")
        offsets = column.offsets.to_numpy().astype(np.int64)
        out[name] = (values.to_numpy(), offsets - offsets[0])
    return out


def _tfrecord_columns(path: str, names: Sequence[str], data: bytes, schema: pa.Schema | None
                      ) -> dict[str, Ragged]:
    starts, lengths = scan_records(data, path)
    view = memoryview(data)
    expected = sorted(schema.names) if schema is not None else None
    rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start, length in zip(starts.tolist(), lengths.tolist()):
        try:
            example = decode_example(view[start:start + length])
        except ValueError as exc:
            raise CorruptShardError(path, start - HEADER_BYTES, f"record is not a valid Example ({exc})") from exc
        if expected is not None and sorted(example) != expected or not rows.keys() <= example.keys():
            raise CorruptShardError(path, start - HEADER_BYTES,
                                    f"record has features {sorted(example)}, expected {expected or sorted(rows)}")
        for name, values in rows.items():
            values.append(example[name])
    return {name: _ragged(values) for name, values in rows.items()}


def _ragged(rows: list[np.ndarray]) -> Ragged:
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    return (np.concatenate(rows) if rows else np.zeros(0, np.int64)), offsets
