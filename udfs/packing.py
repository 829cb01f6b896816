"""Pack variable-length token streams into rows of exactly ``seq_len`` tokens.

Input: documents' token streams, concatenated (``tokens``) with their ``lengths``. Output:
three ``(rows, seq_len)`` arrays — ``input_ids``, ``segment_ids`` (1..k for the pieces of a
row in order, 0 for padding) and ``positions`` (0.. within each piece, 0 for padding).
No token is ever dropped: every token of every document lands in exactly one row slot.

1. **Split.** A document longer than ``seq_len`` is cut into ``floor(L / S)`` full pieces and
   one remainder piece (``L mod S`` tokens, if any), in order. Full pieces fill a row alone.
   Positions restart at 0 in each piece: a row never sees the previous piece of its document.

2. **Best-fit decreasing (BFD, the default).** Pieces are taken longest first (ties in input
   order); each goes into the open row with the *least* free space that still fits it, or
   opens a new row. The free capacities of open rows live in a segment tree over ``0..S``,
   so "smallest capacity ``>= L`` with an open row" is an ``O(log S)`` descent and the whole
   packing is ``O(n log n + n log S)``.

   Why it fills: items arrive in decreasing size, so when a piece of size ``s`` opens a new
   row, every open row has less than ``s`` free; free space never grows. If ``s*`` is the
   smallest piece that opened a row, every row opened before it ends with less than ``s*``
   free, i.e. fill ``> 1 - s*/S`` for those rows. On a corpus with a tail of short documents
   ``s*`` is small and fill approaches 1. In the worst case BFD uses at most
   ``11/9 OPT + 6/9`` rows (Dósa 2007), so it is never far from the optimal packing.

3. **Greedy (next-fit, the option).** Pieces in input order are appended to the current
   row; a piece that does not fit closes the row with padding and starts the next. This is
   what "concatenate and pad" pipelines do; its fill is only guaranteed to exceed 1/2 (two
   consecutive rows together hold more than ``S`` tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from pipelines.config import MAX_SEQ_LEN, PackingMethod


@dataclass
class PackedRows:
    input_ids: np.ndarray  # (rows, seq_len), dtype of the tokens
    segment_ids: np.ndarray  # (rows, seq_len) uint16
    positions: np.ndarray  # (rows, seq_len) uint16
    tokens: int  # non-padding slots
    pieces: int
    documents: int
    documents_split: int
    # provenance: the input document (index into ``lengths``) of every segment, row by row in
    # segment order, and how many segments each row has
    segment_doc: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    row_segments: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def padding_tokens(self) -> int:
        return self.rows * int(self.input_ids.shape[1]) - self.tokens

    def segment_values(self, per_document: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values, row_offsets)``: ``per_document[d]`` of each segment's document, row by row."""
        offsets = np.zeros(self.rows + 1, dtype=np.int64)
        np.cumsum(self.row_segments, out=offsets[1:])
        return per_document[self.segment_doc], offsets


@njit(cache=True, nogil=True)
def split_pieces(lengths, seq_len):
    """``(doc, start, length)`` of every piece; ``start`` indexes the concatenated tokens."""
    n_pieces = 0
    for k in range(lengths.shape[0]):
        n_pieces += (lengths[k] + seq_len - 1) // seq_len
    doc = np.empty(n_pieces, dtype=np.int64)
    start = np.empty(n_pieces, dtype=np.int64)
    length = np.empty(n_pieces, dtype=np.int64)
    p = 0
    offset = 0
    for k in range(lengths.shape[0]):
        remaining = lengths[k]
        s = offset
        while remaining > 0:
            take = min(remaining, seq_len)
            doc[p] = k
            start[p] = s
            length[p] = take
            s += take
            remaining -= take
            p += 1
        offset += lengths[k]
    return doc, start, length


@njit(cache=True, nogil=True)
def _tree_add(tree, size, capacity, delta):
    i = size + capacity
    while i >= 1:
        tree[i] += delta
        i >>= 1


@njit(cache=True, nogil=True)
def _tree_first_at_least(tree, size, need):
    """Smallest capacity ``c >= need`` with ``tree`` count > 0, or -1."""
    i = size + need
    if tree[i] > 0:
        return need
    while True:
        if i == 1:
            return -1
        if (i & 1) == 0 and tree[i + 1] > 0:
            i += 1
            break
        i >>= 1
    while i < size:
        i = 2 * i if tree[2 * i] > 0 else 2 * i + 1
    return i - size


@njit(cache=True, nogil=True)
def best_fit_decreasing(length, seq_len):
    """Row and offset of each piece under BFD; returns ``(row, offset, segment, n_rows)``."""
    n = length.shape[0]
    order = np.argsort(-length, kind="mergesort")  # stable: ties keep input order
    size = 1
    while size < seq_len + 1:
        size *= 2
    tree = np.zeros(2 * size, dtype=np.int64)
    # open rows with free capacity c form a stack: head[c] -> next_row[...] -> ... -> -1
    head = np.full(seq_len + 1, -1, dtype=np.int64)
    next_row = np.full(n, -1, dtype=np.int64)
    fill = np.zeros(n, dtype=np.int64)
    nseg = np.zeros(n, dtype=np.int64)
    row = np.empty(n, dtype=np.int64)
    offset = np.empty(n, dtype=np.int64)
    segment = np.empty(n, dtype=np.int64)
    n_rows = 0
    for j in range(n):
        p = order[j]
        need = length[p]
        c = _tree_first_at_least(tree, size, need)
        if c < 0:
            r = n_rows
            n_rows += 1
        else:
            r = head[c]
            head[c] = next_row[r]
            _tree_add(tree, size, c, -1)
        row[p] = r
        offset[p] = fill[r]
        nseg[r] += 1
        segment[p] = nseg[r]
        fill[r] += need
        free = seq_len - fill[r]
        if free > 0:
            next_row[r] = head[free]
            head[free] = r
            _tree_add(tree, size, free, 1)
    return row, offset, segment, n_rows


@njit(cache=True, nogil=True)
def next_fit(length, seq_len):
    """Row and offset of each piece under greedy next-fit, in input order."""
    n = length.shape[0]
    row = np.empty(n, dtype=np.int64)
    offset = np.empty(n, dtype=np.int64)
    segment = np.empty(n, dtype=np.int64)
    r = -1
    fill = seq_len
    seg = 0
    for p in range(n):
        if fill + length[p] > seq_len:
            r += 1
            fill = 0
            seg = 0
        row[p] = r
        offset[p] = fill
        seg += 1
        segment[p] = seg
        fill += length[p]
    return row, offset, segment, r + 1


@njit(cache=True, nogil=True)
def _assemble(tokens, start, length, row, offset, segment, ids, seg_ids, positions):
    for p in range(start.shape[0]):
        r = row[p]
        o = offset[p]
        s = start[p]
        for t in range(length[p]):
            ids[r, o + t] = tokens[s + t]
            seg_ids[r, o + t] = segment[p]
            positions[r, o + t] = t


def pack(tokens: np.ndarray, lengths: np.ndarray, seq_len: int, pad_id: int,
         method: PackingMethod = PackingMethod.BEST_FIT, token_dtype=np.uint16) -> PackedRows:
    """Pack documents (``tokens`` concatenated, ``lengths`` each) into full rows."""
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    if np.any(lengths <= 0):
        raise ValueError("every document must have at least one token")
    if int(lengths.sum()) != tokens.shape[0]:
        raise ValueError("lengths do not add up to the number of tokens")
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        raise ValueError(f"seq_len must be in [1, {MAX_SEQ_LEN}]")
    doc, start, length = split_pieces(lengths, seq_len)
    if method == PackingMethod.BEST_FIT:
        row, offset, segment, n_rows = best_fit_decreasing(length, seq_len)
    elif method == PackingMethod.GREEDY:
        row, offset, segment, n_rows = next_fit(length, seq_len)
    else:
        raise ValueError(f"unknown packing method {method!r}")
    ids = np.full((n_rows, seq_len), pad_id, dtype=token_dtype)
    seg_ids = np.zeros((n_rows, seq_len), dtype=np.uint16)
    positions = np.zeros((n_rows, seq_len), dtype=np.uint16)
    _assemble(np.ascontiguousarray(tokens), start, length, row, offset, segment, ids, seg_ids, positions)
    by_slot = np.lexsort((segment, row))  # pieces in row order, segments in order within a row
    return PackedRows(ids, seg_ids, positions, tokens=int(lengths.sum()), pieces=int(length.shape[0]),
                      documents=int(lengths.shape[0]), documents_split=int((lengths > seq_len).sum()),
                      segment_doc=doc[by_slot], row_segments=np.bincount(row, minlength=n_rows).astype(np.int64))


def permute_rows(rows: PackedRows, seed: tuple[int, ...]) -> PackedRows:
    """Shuffle rows with a seeded generator (BFD emits long pieces first; trainers read in order)."""
    perm = np.random.Generator(np.random.PCG64(list(seed))).permutation(rows.rows)
    offsets = np.zeros(rows.rows + 1, dtype=np.int64)
    np.cumsum(rows.row_segments, out=offsets[1:])
    counts = rows.row_segments[perm]
    new_starts = np.cumsum(counts) - counts
    # segment j of new row i comes from old slot offsets[perm[i]] + j
    take = np.repeat(offsets[perm], counts) + np.arange(int(counts.sum())) - np.repeat(new_starts, counts)
    segment_doc = rows.segment_doc[take]
    return PackedRows(rows.input_ids[perm], rows.segment_ids[perm], rows.positions[perm], rows.tokens,
                      rows.pieces, rows.documents, rows.documents_split, segment_doc, rows.row_segments[perm])


def next_token_targets(input_ids: np.ndarray, segment_ids: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, target_segment_ids)``: each slot's next token within its segment, as a trainer that
    shifts before packing (MaxText) sees them. A segment's last slot has no next token: ``pad_id``
    and segment 0, which the loss skips (the rest of a split document is in another row)."""
    targets = np.full_like(input_ids, pad_id)
    target_segments = np.zeros_like(segment_ids)
    same = (segment_ids[:, 1:] == segment_ids[:, :-1]) & (segment_ids[:, :-1] > 0)
    targets[:, :-1][same] = input_ids[:, 1:][same]
    target_segments[:, :-1][same] = segment_ids[:, :-1][same]
    return targets, target_segments


def unpack_segments(input_ids: np.ndarray, segment_ids: np.ndarray) -> list[np.ndarray]:
    """Every non-padding segment of every row, in row order: the inverse view used by readers and tests."""
    out = []
    for ids, seg in zip(input_ids, segment_ids):
        boundaries = np.flatnonzero(np.diff(seg.astype(np.int64))) + 1
        for piece, s in zip(np.split(ids, boundaries), np.split(seg, boundaries)):
            if s[0] != 0:
                out.append(piece)
    return out
