"""Arrow batch of texts -> Arrow batch of document token streams (schema ``schemas.packed.TOKENIZED``).

The vectorized kernel is ``tokenizers.Tokenizer.encode_batch`` (Rust; on byte-level BPE it
costs less CPU than ``encode_batch_fast``: BENCHMARKS.md, "Pack job"); around it only
array arithmetic and one Numba copy: each document's stream is

    [BOS] + encode(text, add_special_tokens=False).ids + [EOS]

with BOS only when configured. Special tokens are placed here, explicitly, and never by the
tokenizer's own post-processor (``add_special_tokens=False``), so a ``tokenizer.json`` with a
template cannot add a second BOS, and truncation/padding set in the file are switched off so
no token is ever lost silently. With ``max_doc_tokens`` the *content* is cut to
``max_doc_tokens - specials`` tokens (EOS is kept) and the cut is counted in ``n_dropped``.

Keys: two xxHash64 digests (seeds 0, 1) of the UTF-8 text, the deterministic order in which
documents reach the packer. Equal keys mean equal text, hence equal streams, so ties between
them cannot change the output bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from udfs.arrow_buffers import string_buffers
from numba import njit

from udfs.hashing import xxh64

STATUS_OK = 0
STATUS_NULL = 1
STATUS_EMPTY = 2

_CACHE: dict[str, object] = {}


@dataclass(frozen=True)
class StreamSpec:
    """How a document becomes a token stream. It travels in every tokenizing task's closure, the
    tokenizer file (megabytes) included: PySpark sends a task's Python function as a broadcast,
    once per executor, when it is over ``spark.broadcast.UDFCompressionThreshold`` (1 MB)."""

    tokenizer_json: str
    eos_id: int
    bos_id: int | None = None
    max_doc_tokens: int | None = None

    @property
    def specials(self) -> int:
        return 1 + (self.bos_id is not None)


def load_tokenizer(tokenizer_json: str):
    """Parse a tokenizer once per worker process; truncation and padding switched off."""
    key = hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest()
    tok = _CACHE.get(key)
    if tok is None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(tokenizer_json)
        tok.no_truncation()
        tok.no_padding()
        _CACHE.clear()
        _CACHE[key] = tok
    return tok


def encode_texts(tok, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(flat int32 ids, int64 lengths)`` of ``texts`` without special tokens."""
    if not texts:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    encodings = tok.encode_batch(texts, add_special_tokens=False)
    id_lists = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    flat = np.fromiter(chain.from_iterable(id_lists), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def build_streams(flat: np.ndarray, lengths: np.ndarray, spec: StreamSpec
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add BOS/EOS (and apply the cap) to concatenated content: ``(ids, out_offsets, dropped)``."""
    kept = lengths.copy()
    if spec.max_doc_tokens is not None:
        kept = np.minimum(lengths, spec.max_doc_tokens - spec.specials)
    out_offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(kept + spec.specials, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.int32)
    bos = -1 if spec.bos_id is None else spec.bos_id
    _fill_streams(flat, lengths, kept, out_offsets, bos, spec.eos_id, out)
    return out, out_offsets, lengths - kept


@njit(cache=True, nogil=True)
def _fill_streams(flat, lengths, kept, out_offsets, bos, eos, out):
    """One pass over the content: ``[bos] + flat[doc][:kept] + [eos]`` per document (no BOS if ``bos < 0``)."""
    src = 0
    for k in range(lengths.shape[0]):
        dst = out_offsets[k]
        if bos >= 0:
            out[dst] = bos
            dst += 1
        out[dst:dst + kept[k]] = flat[src:src + kept[k]]
        out[out_offsets[k + 1] - 1] = eos
        src += lengths[k]


@njit(cache=True, nogil=True)
def _keys(offsets, data, valid):
    n = offsets.shape[0] - 1
    hi = np.zeros(n, dtype=np.uint64)
    lo = np.zeros(n, dtype=np.uint64)
    for k in range(n):
        if valid[k]:
            hi[k] = xxh64(data, offsets[k], offsets[k + 1], np.uint64(0))
            lo[k] = xxh64(data, offsets[k], offsets[k + 1], np.uint64(1))
    return hi, lo


def text_keys(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit digests of each text, as int64 (Spark's long); 0 for nulls."""
    hi, lo = _keys(*string_buffers(texts))
    return hi.view(np.int64), lo.view(np.int64)


def tokenize_batch(texts: pa.Array, spec: StreamSpec) -> pa.RecordBatch:
    """One output row per input text (status says whether it was tokenized)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    n = len(texts)
    hi, lo = text_keys(texts)
    valid = texts.is_valid().to_numpy(zero_copy_only=False)
    py = texts.to_pylist()
    chosen = np.flatnonzero(valid & (pc.binary_length(texts).fill_null(0).to_numpy() > 0))
    flat, lengths = encode_texts(load_tokenizer(spec.tokenizer_json), [py[i] for i in chosen])
    status = np.where(valid, STATUS_EMPTY, STATUS_NULL).astype(np.int32)
    n_content = np.zeros(n, dtype=np.int64)
    n_content[chosen] = lengths
    # documents whose text produced no tokens stay "empty" and carry no stream
    streamed = chosen[lengths > 0]
    status[streamed] = STATUS_OK
    ids, offsets, dropped = build_streams(flat, lengths[lengths > 0], spec)
    n_stream = np.zeros(n, dtype=np.int64)
    n_stream[streamed] = np.diff(offsets)
    n_dropped = np.zeros(n, dtype=np.int64)
    n_dropped[streamed] = dropped
    list_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(n_stream, out=list_offsets[1:])
    id_lists = pa.ListArray.from_arrays(pa.array(list_offsets), pa.array(ids, type=pa.int32()))
    return pa.RecordBatch.from_arrays(
        [pa.array(hi), pa.array(lo), pa.array(status), pa.array(n_content), pa.array(n_dropped),
         pa.array(n_stream), id_lists],
        names=["key_hi", "key_lo", "status", "n_content", "n_dropped", "n_stream", "ids"])


def ids_as_binary(batch: pa.RecordBatch, token_dtype) -> pa.RecordBatch:
    """``ids`` as one ``binary`` value of ``token_dtype`` (little-endian) per document.

    Why: the JVM converts and writes a ``list<int>`` element by element (Arrow -> row, Parquet
    levels, shuffle); a ``binary`` value is one copy, and uint16 halves the bytes.
    """
    ids = batch.column("ids")
    width = np.dtype(token_dtype).itemsize
    offsets = ids.offsets.to_numpy()
    values = ids.values.to_numpy()[offsets[0]:offsets[-1]].astype(token_dtype)
    offsets = offsets - offsets[0]
    as_bytes = pa.Array.from_buffers(pa.binary(), len(ids), [None, pa.py_buffer(offsets * np.int32(width)),
                                                             pa.py_buffer(values)])
    return batch.set_column(batch.schema.get_field_index("ids"), "ids", as_bytes)
