"""Arrow batch of texts -> Arrow batch of document token streams (schema ``schemas.packed.TOKENIZED``).

The vectorized kernel is ``tokenizers.Tokenizer.encode_batch_fast`` (Rust, no offsets);
around it only array arithmetic: each document's stream is

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
    """How a document becomes a token stream; small enough to ship in every task's closure."""

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
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    id_lists = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    flat = np.fromiter(chain.from_iterable(id_lists), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def build_streams(flat: np.ndarray, lengths: np.ndarray, spec: StreamSpec
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add BOS/EOS (and apply the cap) to concatenated content: ``(ids, out_offsets, dropped)``."""
    n = lengths.shape[0]
    nb = int(spec.bos_id is not None)
    kept = lengths.copy()
    if spec.max_doc_tokens is not None:
        kept = np.minimum(lengths, spec.max_doc_tokens - spec.specials)
    dropped = lengths - kept
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(kept + spec.specials, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.int32)
    in_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=in_offsets[1:])
    # source index and destination index of every kept content token
    doc_of = np.repeat(np.arange(n), kept)
    within = _within(kept)
    src = in_offsets[:-1][doc_of] + within
    dst = out_offsets[:-1][doc_of] + nb + within
    out[dst] = flat[src]
    if nb:
        out[out_offsets[:-1]] = spec.bos_id
    out[out_offsets[1:] - 1] = spec.eos_id
    return out, out_offsets, dropped


def _within(counts: np.ndarray) -> np.ndarray:
    """``[0..counts[0]-1, 0..counts[1]-1, ...]``."""
    total = int(counts.sum())
    starts = np.zeros(counts.shape[0], dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


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
    has_tokens = lengths > 0
    status[chosen[has_tokens]] = STATUS_OK
    # documents whose text produced no tokens stay "empty" and carry no stream
    ids, offsets, dropped = build_streams(flat, lengths, spec)
    per_doc = np.diff(offsets)
    per_doc[~has_tokens] = 0
    keep_tokens = np.repeat(has_tokens, np.diff(offsets))
    ids = ids[keep_tokens]
    all_counts = np.zeros(n, dtype=np.int64)
    all_counts[chosen] = per_doc
    list_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(all_counts, out=list_offsets[1:])
    n_dropped = np.zeros(n, dtype=np.int64)
    n_dropped[chosen] = dropped
    id_lists = pa.ListArray.from_arrays(pa.array(list_offsets), pa.array(ids, type=pa.int32()))
    return pa.RecordBatch.from_arrays(
        [pa.array(hi), pa.array(lo), pa.array(status), pa.array(n_content), pa.array(n_dropped),
         pa.array(all_counts), id_lists],
        names=["key_hi", "key_lo", "status", "n_content", "n_dropped", "n_stream", "ids"])
