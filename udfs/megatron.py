"""Megatron-LM / NeMo indexed datasets (``.bin`` + ``.idx``), written and read without Megatron.

Layout, as megatron-core's ``megatron/core/datasets/indexed_dataset.py`` reads it (version 1,
all integers little-endian)::

    .bin   the tokens of every sequence, concatenated, in the index's dtype
    .idx   b"MMIDIDX\\x00\\x00"                  9-byte magic
           uint64  version = 1
           uint8   dtype code (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16)
           uint64  sequence count  S
           uint64  document count  D + 1 (entries of the document index below)
           int32   sequence lengths[S]       (tokens)
           int64   sequence pointers[S]      (byte offsets into .bin)
           int64   document index[D + 1]     (sequence index where each document starts; 0 first, S last)

Here every document is one sequence (``[BOS] + tokens + [EOS]``, as the pack job builds its
streams; EOS is what Megatron calls EOD), so the document index is ``0, 1, ..., S``.
"""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8}
_HEADER = struct.Struct("<9sQBQQ")


def index_bytes(lengths: np.ndarray, dtype) -> bytes:
    """The ``.idx`` of documents of ``lengths`` tokens stored as ``dtype``, one sequence each."""
    dtype = np.dtype(dtype)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.max() > np.iinfo(np.int32).max or lengths.min() < 1):
        raise ValueError("sequence lengths must be in [1, 2**31 - 1]")
    pointers = np.zeros(lengths.shape[0], dtype=np.int64)
    np.cumsum(lengths[:-1] * dtype.itemsize, out=pointers[1:])
    documents = np.arange(lengths.shape[0] + 1, dtype=np.int64)
    header = _HEADER.pack(MAGIC, VERSION, DTYPE_CODES[dtype], lengths.shape[0], documents.shape[0])
    return b"".join([header, lengths.astype("<i4").tobytes(), pointers.astype("<i8").tobytes(),
                     documents.astype("<i8").tobytes()])


def data_bytes(tokens: np.ndarray, dtype) -> bytes:
    """The ``.bin``: the documents' tokens, concatenated."""
    return np.ascontiguousarray(tokens).astype(np.dtype(dtype).newbyteorder("<"), copy=False).tobytes()


def read_index(data: bytes) -> tuple[np.dtype, np.ndarray, np.ndarray, np.ndarray]:
    """``(dtype, lengths, pointers, document_index)`` of an ``.idx``; ``ValueError`` if it is malformed."""
    if len(data) < _HEADER.size:
        raise ValueError("shorter than the index header")
    magic, version, code, sequences, documents = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a version-{VERSION} Megatron index")
    dtype = {c: d for d, c in DTYPE_CODES.items()}.get(code)
    if dtype is None:
        raise ValueError(f"unknown dtype code {code}")
    expected = _HEADER.size + 4 * sequences + 8 * sequences + 8 * documents
    if len(data) != expected:
        raise ValueError(f"{len(data)} bytes, the header implies {expected}")
    offset = _HEADER.size
    lengths = np.frombuffer(data, "<i4", sequences, offset)
    pointers = np.frombuffer(data, "<i8", sequences, offset + 4 * sequences)
    document_index = np.frombuffer(data, "<i8", documents, offset + 12 * sequences)
    return dtype, lengths, pointers, document_index
