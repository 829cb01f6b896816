"""Fused normalise → tokenise → shingle → MinHash kernel over an Arrow batch of texts.

One compiled scan per document (then passes over its token hashes and normalised bytes)
produces

* the **exact hash** — two xxHash64 digests (seeds 0 and 1, 128 bits together) of the
  *normalised* text: lowercased (Arrow's ``utf8_lower``: the simple per-code-point Unicode
  case mapping), runs of whitespace collapsed to one space, leading/trailing whitespace
  dropped. Two documents with equal digests are exact copies;
* the **shingle count** and the **MinHash signature** of the shingle set.

Shingles
    *word* mode: tokens are maximal runs of Unicode word characters (``\\w``: letters, digits,
    ``_``) of the lowercased text; a token's hash folds its UTF-8 bytes ``c`` as
    ``h = (h ^ c) * P1 (mod 2**64)`` from ``h = P5`` (FNV-1a's shape with xxHash64's primes,
    computed during the scan, no second pass) and ends with xxHash64's avalanche; every
    window of ``n`` consecutive token hashes ``t1..tn`` becomes one shingle hash
    ``avalanche64(round(...round(P5, t1)..., tn) + n)`` using xxHash64's round and finaliser.
    A document with ``0 < k < n`` tokens yields exactly one shingle over its ``k`` tokens, so
    short documents get their own signature instead of a shared "empty" one.
    *char* mode: the same windows over the code points of the normalised text.
    Shingles form a set: repeats do not change a minimum.

MinHash
    Each 64-bit shingle hash is folded to 32 bits, ``x = (h ^ (h >> 32)) mod 2**32``, and
    permutation ``i`` is Dietzfelbinger's multiply-add-shift
    ``h_i(x) = ((a_i * x + b_i) mod 2**64) >> 32`` with ``a_i, b_i`` drawn as uniform 64-bit
    words from ``numpy.random.PCG64(seed)``: a strongly universal family from 32-bit keys to
    32-bit values. ``sig[i] = min over shingles of h_i(x)`` (uint32). For two sets with
    Jaccard similarity ``J``, ``P(sig_A[i] == sig_B[i]) ≈ J``, so the fraction of agreeing
    positions is an unbiased estimate of ``J`` with standard error ``sqrt(J(1-J)/num_perm)``.
    A document with no shingles keeps the all-``0xFFFFFFFF`` signature and ``n_shingles == 0``;
    callers must not put it into LSH.

Stability: signatures are persisted, so the tokeniser, hash and permutation draw above are
part of the on-disk format, pinned by a golden test. Changing any of them requires a new
``SIGNATURE_VERSION`` (``udfs.signature_format``).

Speed: lowercasing is folded into the scan (Arrow's own case mapping, tabulated per code
point; malformed UTF-8, rare, falls back to Arrow's pass). The scan copies and hashes runs
of ASCII word bytes in a tight loop with one unpredictable branch per token; other ASCII
bytes (spaces and punctuation, over a third of source code) take a one-byte step without the
case tables, and other code points a table-driven step. Shingle rounds run across all
windows at once, and the MinHash loop runs permutations outside and shingles inside, a
min-reduction; both vectorise. At 256 permutations the scan is about 60 % of the cost and
the MinHash loop the rest (figures: BENCHMARKS.md, "Dedup speed and memory"). A text met
before is not signed again: :class:`SignatureMemo` keeps the outputs of recent texts by a
hash of their bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from udfs.arrow_buffers import string_buffers
from udfs.hashing import P1, P2, P5, _round_scaled, avalanche64, load_le, store_le, xxh64
from udfs.pairs import pair_rows
from udfs.signature_format import EMPTY_SLOT, MAX_NGRAM
from udfs.text import (ASCII_WORD_LOWERCASE, CHAR_CLASSES, LOWERCASE, MAX_LOWERCASE_GROWTH, SPACE, WORD,
                       decode_utf8, encode_utf8, lowercase, well_formed)

TABLES = (ASCII_WORD_LOWERCASE, CHAR_CLASSES, LOWERCASE)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(a, b)`` uint64 coefficient vectors of the ``num_perm`` hash functions."""
    if num_perm < 1:
        raise ValueError("num_perm must be at least 1")
    rng = np.random.Generator(np.random.PCG64(seed))
    words = rng.integers(0, 2**64, size=(2, num_perm), dtype=np.uint64, endpoint=False)
    return words[0].copy(), words[1].copy()


@njit(inline="always")
def _ascii_words(data, i, end, ascii_word_lowercase, lowered, scratch, length, units, tokens, token_hash):
    """The ASCII fast path, entered at a word byte (``lowered``, at ``data[i]``) of an open token.

    Copies (lowercased) and hashes ASCII word bytes in a tight loop, and across a single
    space to the next ASCII word closes the token and goes on, so that typical text costs
    one unpredictable branch (a token's end) per token. Unsigned indices spare Numba's
    negative-index checks. Returns the state after the last word byte, whose token stays
    open: a non-ASCII word character may continue it.
    """
    while True:
        shift = length - i  # one index for both buffers while copying a run
        while lowered:
            scratch[np.uint64(i + shift)] = lowered
            token_hash = (token_hash ^ np.uint64(lowered)) * P1
            i += 1
            lowered = ascii_word_lowercase[data[np.uint64(i)]] if i < end else 0
        length = i + shift
        if i + 1 < end and data[np.uint64(i)] == 32:
            lowered = ascii_word_lowercase[data[np.uint64(i + 1)]]
            if lowered:
                units[np.uint64(tokens)] = token_hash
                tokens += 1
                scratch[np.uint64(length)] = 32
                length += 1
                token_hash = P5
                i += 1
                continue
        return i, length, tokens, token_hash


@njit(inline="always")
def _scan(data, start, end, tables, fold_case, scratch, units):
    """Normalise ``data[start:end]`` into ``scratch`` and hash its tokens into ``units``.

    Returns ``(normalised_length, n_tokens)``, or ``n_tokens == -1`` at malformed UTF-8
    under ``fold_case``. Token hashes are the raw FNV-shaped chains (no avalanche yet).

    With ``fold_case`` the text is lowercased on the way, code point by code point, from
    Arrow's own table (:data:`udfs.text.LOWERCASE`): equal to running ``pc.utf8_lower``
    first, for well-formed UTF-8. Without it the input must be lowercased already; ASCII
    word bytes still go through the lowercase table, which leaves them as they are.

    ASCII word bytes take :func:`_ascii_words`; everything else goes one code point at a
    time, other ASCII bytes without decoding or case mapping (each is its own lowercase).
    (This code point step stays written out here: moved into a helper that takes the
    arrays, Numba reference-counts them on every call, which doubles the cost of
    non-ASCII text.)
    """
    ascii_word_lowercase, classes, lowercase_table = tables
    length = 0
    tokens = 0
    pending_space = False
    in_token = False
    token_hash = P5
    i = start
    while i < end:
        lowered = ascii_word_lowercase[data[np.uint64(i)]]
        if lowered:
            if not in_token:
                if pending_space:
                    scratch[length] = 32
                    length += 1
                    pending_space = False
                in_token = True
                token_hash = P5
            i, length, tokens, token_hash = _ascii_words(data, i, end, ascii_word_lowercase, lowered,
                                                         scratch, length, units, tokens, token_hash)
            continue
        byte = data[i]
        if byte < 0x80:  # not a word byte (those took the fast path), so its own lowercase
            lowered = packed = np.int64(byte)
            width = out_width = 1
        else:
            cp, width = decode_utf8(data, i, end)
            if fold_case:
                if not well_formed(data, i, cp, width):
                    return length, -1
                lowered = np.int64(lowercase_table[cp])
                packed, out_width = encode_utf8(lowered)
            else:  # keep the bytes as they are, malformed ones included
                lowered = cp
                packed, out_width = np.int64(load_le(data, i, width)), width
        cls = classes[lowered]
        if in_token and cls != WORD:
            units[tokens] = token_hash
            tokens += 1
            in_token = False
        if cls == SPACE:
            pending_space = length > 0
        else:
            if pending_space:
                scratch[length] = 32
                length += 1
                pending_space = False
            store_le(scratch, length, packed, 4)
            length += out_width
            if cls == WORD:
                if not in_token:
                    in_token = True
                    token_hash = P5
                for k in range(out_width):
                    token_hash = (token_hash ^ np.uint64((packed >> (8 * k)) & 0xFF)) * P1
        i += width
    if in_token:
        units[tokens] = token_hash
        tokens += 1
    return length, tokens


@njit(inline="always")
def _token_lanes(lanes, n_tokens):
    """Finish the token hashes (avalanche) and scale them into round lanes, in place."""
    for t in range(n_tokens):
        lanes[t] = avalanche64(lanes[t]) * P2


@njit(inline="always")
def _char_lanes(scratch, length, lanes):
    """Round lanes of the code points of the normalised text (*char* mode); returns their count."""
    count = 0
    j = 0
    while j < length:
        cp, width = decode_utf8(scratch, j, length)
        lanes[count] = np.uint64(cp) * P2
        count += 1
        j += width
    return count


@njit(inline="always")
def _shingle_hashes(lanes, n_units, ngram, states):
    """64-bit hashes of every window of ``ngram`` consecutive units, in ``states``; returns their count.

    ``lanes`` holds ``unit * P2``: xxHash64's round multiplies its lane first, and scaling
    each unit once instead of in each of its ``ngram`` windows saves ``ngram - 1``
    multiplies per shingle. Fewer than ``ngram`` units make one window over all of them.
    The rounds run one position at a time across all windows (``states`` holds the running
    hashes): independent iterations that LLVM vectorises.
    """
    width = min(ngram, n_units)
    count = n_units - width + 1 if n_units > 0 else 0
    states[:count] = P5
    for j in range(width):
        for w in range(count):
            states[w] = _round_scaled(states[w], lanes[w + j])
    for w in range(count):
        states[w] = avalanche64(states[w] + np.uint64(width))
    return count


@njit(inline="always")
def _shingle_values(lanes, n_units, ngram, states, values):
    """The 32-bit MinHash keys of the shingles: each 64-bit hash folded, ``h ^ (h >> 32)``."""
    count = _shingle_hashes(lanes, n_units, ngram, states)
    for w in range(count):
        s = states[w]
        values[w] = np.uint32((s ^ (s >> np.uint64(32))) & np.uint64(0xFFFFFFFF))
    return count


@njit(inline="always")
def _units(data, start, end, tables, fold_case, char_mode, scratch, lanes):
    """Scan one document into round lanes (tokens, or code points in *char* mode).

    Returns ``(normalised_length, n_units)``; ``n_units == -1`` at malformed UTF-8 under
    ``fold_case`` (see :func:`_scan`).
    """
    length, n_units = _scan(data, start, end, tables, fold_case, scratch, lanes)
    if n_units < 0:
        return length, n_units
    if char_mode:
        n_units = _char_lanes(scratch, length, lanes)
    else:
        _token_lanes(lanes, n_units)
    return length, n_units


@njit(inline="always")
def _min_hash(values, count, a, b, sig):
    """``sig[p] = min_k h_p(values[k])`` with ``h_p(x) = ((a_p x + b_p) mod 2**64) >> 32``.

    The shift is monotone, so the minimum is taken over the 64-bit words ``(a_p x + b_p) mod
    2**64`` and shifted once per permutation: the inner loop is a multiply, an add and an
    unsigned min per shingle, which LLVM turns into one 64-bit vector multiply (AVX-512) per 8
    shingles. Taking the 32-bit values first (a shift and a narrowing per shingle) made the
    loop about twice as slow: the whole kernel ran at 150 instead of 220 MB/s per core
    (BENCHMARKS.md). Permutations outside, shingles inside: a min-reduction with the
    coefficients held in registers.
    """
    for p in range(sig.shape[0]):
        coef, offset = a[p], b[p]
        low = np.uint64(0xFFFFFFFFFFFFFFFF)
        for k in range(count):
            low = min(low, coef * np.uint64(values[k]) + offset)
        sig[p] = np.uint32(low >> np.uint64(32))


@njit(cache=True)
def _text_keys(offsets, data, valid, key_hi, key_lo, lengths):
    """Per document: the 128-bit memo key (xxHash64 of its bytes, seeds 0 and 1) and its length
    in code points (the bytes that do not continue a UTF-8 sequence: Arrow's ``utf8_length``,
    malformed input included)."""
    for d in range(offsets.shape[0] - 1):
        if not valid[d]:
            continue
        start, end = offsets[d], offsets[d + 1]
        key_hi[d] = xxh64(data, start, end, 0)
        key_lo[d] = xxh64(data, start, end, 1)
        count = 0
        for i in range(start, end):
            count += (data[i] & 0xC0) != 0x80
        lengths[d] = count


@njit(inline="always")
def _memo_slot(memo_keys, memo_filled, key_hi, key_lo):
    """The slot of the memo table holding the key, or the empty slot where it goes (linear probing;
    the table is never more than half full)."""
    mask = memo_filled.shape[0] - 1
    slot = np.int64(key_lo & np.uint64(mask))
    while memo_filled[slot] and (memo_keys[slot, 0] != key_hi or memo_keys[slot, 1] != key_lo):
        slot = (slot + 1) & mask
    return slot


@njit(cache=True)
def _signature_kernel(offsets, data, valid, key_hi, key_lo, tables, fold_case, ngram, char_mode, a, b,
                      memo, sigs, exact_hi, exact_lo, n_shingles, norm_len):
    """Fill the outputs of every non-null document, from ``memo`` when its key is there.

    Returns False, stopping early, at the first malformed UTF-8 under ``fold_case``; a run
    without it then rewrites every output. What the memo holds is right on either run: a
    document's outputs depend on its bytes only.
    """
    memo_keys, memo_filled, memo_sigs, memo_values, memo_used = memo
    n_docs = offsets.shape[0] - 1
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    # Room for the lowercased text plus 3 bytes: a code point is written as a 4-byte word.
    scratch = np.empty(int(np.ceil(longest * MAX_LOWERCASE_GROWTH)) + 4, dtype=np.uint8)
    lanes = np.empty(longest + 1, dtype=np.uint64)  # at most one unit per byte
    states = np.empty(longest + 1, dtype=np.uint64)  # and one shingle per unit
    values = np.empty(longest + 1, dtype=np.uint32)
    for d in range(n_docs):
        sig = sigs[d]
        sig[:] = EMPTY_SLOT
        if not valid[d]:
            continue
        slot = _memo_slot(memo_keys, memo_filled, key_hi[d], key_lo[d])
        if memo_filled[slot]:
            sig[:] = memo_sigs[slot]
            exact_hi[d], exact_lo[d] = memo_values[slot, 0], memo_values[slot, 1]
            n_shingles[d], norm_len[d] = memo_values[slot, 2], memo_values[slot, 3]
            continue
        length, n_units = _units(data, offsets[d], offsets[d + 1], tables, fold_case, char_mode, scratch, lanes)
        if n_units < 0:
            return False
        shingles = _shingle_values(lanes, n_units, ngram, states, values)
        _min_hash(values, shingles, a, b, sig)
        norm_len[d] = length
        n_shingles[d] = shingles
        exact_hi[d] = xxh64(scratch, 0, length, 0) if length > 0 else np.uint64(0)
        exact_lo[d] = xxh64(scratch, 0, length, 1) if length > 0 else np.uint64(0)
        if 2 * (memo_used[0] + 1) > memo_filled.shape[0]:  # half full: start afresh
            memo_filled[:] = False
            memo_used[0] = 0
            slot = _memo_slot(memo_keys, memo_filled, key_hi[d], key_lo[d])
        memo_filled[slot] = True
        memo_used[0] += 1
        memo_keys[slot, 0], memo_keys[slot, 1] = key_hi[d], key_lo[d]
        memo_sigs[slot] = sig
        memo_values[slot, 0], memo_values[slot, 1] = exact_hi[d], exact_lo[d]
        memo_values[slot, 2], memo_values[slot, 3] = np.uint64(shingles), np.uint64(length)
    return True


# The most a worker's memo of signed texts may take, all slots in use; its slots are a power of two
# (65,536 at 256 permutations: 70 MB, at most 32,768 texts remembered). On the 1 GB slice of
# BENCHMARKS.md, signing each half as one worker does: 8.4 s without a memo, 7.1 s with this
# one, 7.5 s with half of it and 8.8 s with a quarter.
MEMO_BYTES = 96 * 2**20


class SignatureMemo:
    """The outputs of texts already signed, by a 128-bit hash of their bytes (xxHash64, seeds 0
    and 1): a text met again costs two hashes of its bytes instead of the scan and the MinHash
    loop. Real corpora repeat whole files (the releases of a package share most of theirs; the
    1 GB slice of BENCHMARKS.md holds 1,000 MB of text of which 762 MB are distinct), and
    outputs depend on a text's bytes only, so they are equal bit for bit to a fresh run's.

    The table holds up to ``slots / 2`` texts of one hash family (``a``, ``b``, ``ngram``,
    ``char_ngrams``) and forgets them all when it fills: a copy is caught when it comes within
    that many distinct texts of the one before. Two distinct texts of one corpus share a key
    with chance about ``n**2 / 2**129``.
    """

    def __init__(self, num_perm: int, slots: int) -> None:
        if slots < 2 or slots & (slots - 1):
            raise ValueError("slots must be a power of two, at least 2")
        self.tables = (np.zeros((slots, 2), dtype=np.uint64), np.zeros(slots, dtype=np.bool_),
                       np.empty((slots, num_perm), dtype=np.uint32), np.empty((slots, 4), dtype=np.uint64),
                       np.zeros(1, dtype=np.int64))

    def __len__(self) -> int:
        """How many texts the memo holds now."""
        return int(self.tables[4][0])

    @staticmethod
    def slots_for(num_perm: int, budget_bytes: int = MEMO_BYTES) -> int:
        """The most slots, a power of two, that fit ``budget_bytes``."""
        per_slot = 4 * num_perm + 16 + 1 + 32
        return max(2, 1 << max(1, (budget_bytes // per_slot).bit_length() - 1))


_process_memo: tuple[tuple, SignatureMemo] | None = None


def process_memo(a: np.ndarray, b: np.ndarray, ngram: int, char_ngrams: bool) -> SignatureMemo:
    """This process's memo for one hash family, kept across calls (a Spark worker is reused by
    the tasks of a job) and replaced when the family changes."""
    global _process_memo
    family = (a.tobytes(), b.tobytes(), ngram, char_ngrams)
    if _process_memo is None or _process_memo[0] != family:
        _process_memo = (family, SignatureMemo(len(a), SignatureMemo.slots_for(len(a))))
    return _process_memo[1]


@dataclass(frozen=True)
class SignatureBatch:
    """Kernel output for one batch; ``signatures`` is ``(n, num_perm)`` uint32, ``lengths`` each
    text's length in code points (0 for a null)."""

    exact_hash_hi: np.ndarray
    exact_hash_lo: np.ndarray
    n_shingles: np.ndarray
    normalized_length: np.ndarray
    signatures: np.ndarray
    lengths: np.ndarray


def _check_ngram(ngram: int) -> None:
    """Both kernels take shingle windows of 1 to ``MAX_NGRAM`` units."""
    if not 1 <= ngram <= MAX_NGRAM:
        raise ValueError(f"ngram must be in [1, {MAX_NGRAM}]")


def compute_signatures(texts: pa.Array | pa.ChunkedArray, *, ngram: int, char_ngrams: bool,
                       a: np.ndarray, b: np.ndarray, memo: SignatureMemo | None = None) -> SignatureBatch:
    """Run the fused kernel on a batch of texts (nulls give empty results).

    Texts in ``memo`` are not signed again, and the ones signed here are added to it; without one,
    repeats within the batch are still signed once.
    """
    _check_ngram(ngram)
    n = len(texts)
    sigs = np.empty((n, a.shape[0]), dtype=np.uint32)
    hi = np.zeros(n, dtype=np.uint64)
    lo = np.zeros(n, dtype=np.uint64)
    n_shingles = np.zeros(n, dtype=np.int32)
    norm_len = np.zeros(n, dtype=np.int64)
    offsets, data, valid = string_buffers(texts)
    key_hi, key_lo, lengths = np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros(n, np.int64)
    _text_keys(offsets, data, valid, key_hi, key_lo, lengths)
    if memo is None:
        memo = SignatureMemo(a.shape[0], 1 << max(1, (2 * n).bit_length()))
    outputs = (memo.tables, sigs, hi, lo, n_shingles, norm_len)
    params = (ngram, char_ngrams, a, b)
    if not _signature_kernel(offsets, data, valid, key_hi, key_lo, TABLES, True, *params, *outputs):
        # Malformed UTF-8 (rare): Arrow raises on some of it and has its own ways with the
        # rest (re-encodes overlong forms, keeps surrogates), so lowercase with Arrow itself.
        low_offsets, low_data, _ = string_buffers(lowercase(texts))
        _signature_kernel(low_offsets, low_data, valid, key_hi, key_lo, TABLES, False, *params, *outputs)
    return SignatureBatch(hi, lo, n_shingles, norm_len, sigs, lengths)


@njit(inline="always")
def _sorted_distinct(values, count, spare, ends):
    """Sort ``values[:count]`` and drop repeats, in place; returns the distinct count.

    Shingle hashes are uniform 64-bit values, so a counting sort on their top
    ``b = ceil(log2 count)`` bits leaves about one value per bucket: one pass to count, one
    to scatter into ``spare``, and an insertion sort per bucket finish in expected linear time
    (``np.sort``, a comparison sort, costs about twice the whole scan). A crowded bucket —
    repeats of one shingle, which land together — goes to ``np.sort``, so no input is
    quadratic. ``spare`` holds ``count`` values and ``ends`` ``2 * count`` counters.
    """
    if count < 2:
        return count
    bits = 1
    while (1 << bits) < count:
        bits += 1
    shift = np.uint64(64 - bits)
    buckets = 1 << bits
    ends[:buckets] = 0
    for w in range(count):
        ends[values[w] >> shift] += 1
    total = 0
    for k in range(buckets):  # ends[k] becomes where bucket k starts
        total += ends[k]
        ends[k] = total - ends[k]
    for w in range(count):  # ... and, after the scatter, where it ends
        k = values[w] >> shift
        spare[ends[k]] = values[w]
        ends[k] += 1
    start = 0
    for k in range(buckets):
        end = ends[k]
        if end - start > 16:
            spare[start:end] = np.sort(spare[start:end])
        else:
            for i in range(start + 1, end):
                v = spare[i]
                j = i
                while j > start and spare[j - 1] > v:
                    spare[j] = spare[j - 1]
                    j -= 1
                spare[j] = v
        start = end
    distinct = 0
    for w in range(count):
        if distinct == 0 or spare[w] != values[distinct - 1]:
            values[distinct] = spare[w]
            distinct += 1
    return distinct


@njit(inline="always")
def _with_room(values, filled, needed):
    """``values`` if ``needed`` more fit after ``values[:filled]``, else a copy of its filled part
    in an array at least twice as long (so that appending costs amortised constant time)."""
    if filled + needed <= values.shape[0]:
        return values
    grown = np.empty(max(2 * values.shape[0], filled + needed), dtype=np.uint64)
    grown[:filled] = values[:filled]
    return grown


@njit(cache=True)
def _shingle_sets_kernel(offsets, data, valid, tables, fold_case, ngram, char_mode, set_offsets, values, filled):
    """Appends the sorted distinct shingle hashes of every document to ``values[:filled]``;
    ``set_offsets[d]`` is where document ``d``'s set starts, ``set_offsets[n]`` where the last
    ends. Returns ``(ok, values, filled)``: ``values`` grown (a new array) when needed; ``ok`` is
    False at the first malformed UTF-8 under ``fold_case`` (the caller lowercases with Arrow and
    reruns from the same ``filled``).

    The shingles are the ones the signature is drawn from (same scan, same windows), before
    their fold to 32 bits.
    """
    n_docs = offsets.shape[0] - 1
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    scratch = np.empty(int(np.ceil(longest * MAX_LOWERCASE_GROWTH)) + 4, dtype=np.uint8)
    lanes = np.empty(longest + 1, dtype=np.uint64)
    states = np.empty(longest + 1, dtype=np.uint64)
    spare = np.empty(longest + 1, dtype=np.uint64)
    ends = np.empty(2 * longest + 2, dtype=np.int64)
    # Room for a shingle per four bytes: more than texts hold, so growing in the loop is rare.
    values = _with_room(values, filled, data.shape[0] // 4 + n_docs + 1)
    set_offsets[0] = filled
    for d in range(n_docs):
        count = 0
        if valid[d]:
            _, n_units = _units(data, offsets[d], offsets[d + 1], tables, fold_case, char_mode, scratch, lanes)
            if n_units < 0:
                return False, values, filled
            count = _sorted_distinct(states, _shingle_hashes(lanes, n_units, ngram, states), spare, ends)
        values = _with_room(values, filled, count)
        values[filled:filled + count] = states[:count]
        filled += count
        set_offsets[d + 1] = filled
    return True, values, filled


@dataclass(frozen=True)
class ShingleSets:
    """Documents' shingle sets: set ``d`` is ``values[offsets[d]:offsets[d + 1]]``, the
    distinct 64-bit shingle hashes of document ``d``, ascending."""

    offsets: np.ndarray  # int64, one more than there are documents
    values: np.ndarray  # uint64


class ShingleSetTable:
    """The shingle sets of texts that arrive batch by batch, in one table that grows as they do.

    A task that scores pairs across its batches needs their sets in one table; the sets outweigh
    the texts (8 bytes a distinct shingle), so each batch's are appended in place rather than
    joined by a copy at the end (on the 1 GB real slice that copy was 0.75 of the 6 CPU seconds
    exact verification spent in Python).
    """

    def __init__(self, *, ngram: int, char_ngrams: bool) -> None:
        _check_ngram(ngram)
        self.ngram, self.char_ngrams = ngram, char_ngrams
        self._offsets = [np.zeros(1, dtype=np.int64)]
        self._values, self._filled = np.empty(0, dtype=np.uint64), 0

    def add(self, texts: pa.Array | pa.ChunkedArray) -> None:
        """Append each text's set (null or shingle-less texts get the empty set)."""
        set_offsets = np.empty(len(texts) + 1, dtype=np.int64)
        params = (self.ngram, self.char_ngrams, set_offsets, self._values, self._filled)
        ok, values, filled = _shingle_sets_kernel(*string_buffers(texts), TABLES, True, *params)
        if not ok:  # malformed UTF-8, as in compute_signatures
            params = (self.ngram, self.char_ngrams, set_offsets, values, self._filled)
            _, values, filled = _shingle_sets_kernel(*string_buffers(lowercase(texts)), TABLES, False, *params)
        self._values, self._filled = values, filled
        self._offsets.append(set_offsets[1:])

    def sets(self) -> ShingleSets:
        """The sets of every text added so far, in order."""
        return ShingleSets(np.concatenate(self._offsets), self._values[:self._filled])


def shingle_sets(texts: pa.Array | pa.ChunkedArray, *, ngram: int, char_ngrams: bool) -> ShingleSets:
    """Each text's shingle set.

    These are the shingles the signature is drawn from (same scan, same windows), before
    their fold to 32 bits; two distinct shingles of one pair of documents collide with chance
    about ``n² / 2**64``, far below one shingle in ``n``. A null or shingle-less text has the
    empty set.
    """
    table = ShingleSetTable(ngram=ngram, char_ngrams=char_ngrams)
    table.add(texts)
    return table.sets()


@njit(cache=True)
def _set_jaccard_kernel(offsets, values, left, right, out):
    for p in range(out.shape[0]):
        i, i_end = offsets[left[p]], offsets[left[p] + 1]
        j, j_end = offsets[right[p]], offsets[right[p] + 1]
        common = 0
        while i < i_end and j < j_end:  # merge of two sorted sets, with no branch to mispredict
            left_value, right_value = values[i], values[j]
            common += left_value == right_value
            i += left_value <= right_value
            j += right_value <= left_value
        union = (i_end - offsets[left[p]]) + (j_end - offsets[right[p]]) - common
        out[p] = common / union if union else 0.0


def set_jaccard(sets: ShingleSets, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the sets ``left[p]`` and ``right[p]`` of ``sets`` (0.0 when
    both are empty: an empty document is similar to nothing). A set in many pairs is read in
    place each time, never copied."""
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    n_sets = len(sets.offsets) - 1
    if left.shape != right.shape or left.ndim != 1:
        raise ValueError("left and right must be index vectors of the same length")
    if len(left) and (min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= n_sets):
        raise IndexError(f"set index out of range for {n_sets} sets")
    out = np.empty(len(left), dtype=np.float64)
    _set_jaccard_kernel(sets.offsets, sets.values, left, right, out)
    return out


def pair_jaccard(doc_ids: np.ndarray, sets: ShingleSets, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the sets of documents ``src[p]`` and ``dst[p]``, where set ``k`` of
    ``sets`` is document ``doc_ids[k]``'s (an id may repeat, with the same set)."""
    return set_jaccard(sets, *pair_rows(doc_ids, src, dst))
