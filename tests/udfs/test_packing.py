"""Packing kernels: best-fit decreasing and next-fit against oracles, row permutation,
per-segment document ids and next-token targets (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import PackingMethod
from tests.conftest import random_documents as _docs
from udfs.packing import (best_fit_decreasing, next_fit, next_token_targets, pack, permute_rows, split_pieces,
                          unpack_segments)


def _pieces_oracle(tokens, lengths, seq_len):
    """Independent split: full pieces of seq_len then the remainder, per document."""
    out, start = [], 0
    for n in lengths.tolist():
        doc = tokens[start:start + n]
        out += [tuple(doc[i:i + seq_len].tolist()) for i in range(0, n, seq_len)]
        start += n
    return sorted(out)


@pytest.mark.parametrize("method", [PackingMethod.BEST_FIT, PackingMethod.GREEDY])
@pytest.mark.parametrize("seq_len", [7, 64, 512])
def test_pack_round_trip_and_row_invariants(method, seq_len):
    tokens, lengths = _docs(seq_len, 400, seq_len)
    rows = pack(tokens, lengths, seq_len, pad_id=0, method=method)
    assert rows.input_ids.shape == rows.segment_ids.shape == rows.positions.shape == (rows.rows, seq_len)
    assert rows.tokens == tokens.shape[0]
    assert rows.documents_split == int((lengths > seq_len).sum())
    # every token of every document exactly once, in order within each piece
    segments = sorted(tuple(s.tolist()) for s in unpack_segments(rows.input_ids, rows.segment_ids))
    assert segments == _pieces_oracle(tokens, lengths, seq_len)
    for ids, seg, pos in zip(rows.input_ids, rows.segment_ids, rows.positions):
        used = int((seg > 0).sum())
        assert np.all(seg[used:] == 0) and np.all(ids[used:] == 0) and np.all(pos[used:] == 0)
        k = int(seg[:used].max())
        bounds = np.flatnonzero(np.diff(seg[:used].astype(int))) + 1
        assert list(np.unique(seg[:used])) == list(range(1, k + 1))
        assert np.all(np.diff(seg[:used].astype(int)) >= 0)
        for part in np.split(pos[:used], bounds):
            assert np.array_equal(part, np.arange(len(part)))


def test_best_fit_fills_better_than_greedy():
    tokens, lengths = _docs(3, 5000, 2048)
    bfd = pack(tokens, lengths, 2048, 0, PackingMethod.BEST_FIT)
    greedy = pack(tokens, lengths, 2048, 0, PackingMethod.GREEDY)
    fill = lambda r: r.tokens / (r.rows * 2048)  # noqa: E731
    assert fill(bfd) > 0.99
    assert fill(bfd) > fill(greedy) + 0.03
    assert bfd.rows < greedy.rows


def test_bfd_finds_the_perfect_packing_of_complementary_pieces():
    # pieces 9,8,...,1 and 1,...,9 at capacity 10 pair up perfectly under BFD; next-fit does not
    length = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=np.int64)
    row, offset, segment, n_rows = best_fit_decreasing(length, 10)
    assert n_rows == 9
    fills = np.bincount(row, weights=length)
    assert np.all(fills == 10)
    assert next_fit(length, 10)[3] > 9


def test_bfd_prefers_the_tightest_row():
    # rows after the three big pieces have 1, 3 and 5 free; a 3 must go into the row with 3 free
    length = np.array([9, 7, 5, 3], dtype=np.int64)
    row, offset, segment, n_rows = best_fit_decreasing(length, 10)
    assert n_rows == 3
    assert row[3] == row[1] and offset[3] == 7 and segment[3] == 2


def test_greedy_is_next_fit_in_input_order():
    length = np.array([6, 3, 2, 8, 1], dtype=np.int64)
    row, offset, segment, n_rows = next_fit(length, 10)
    # 6+3 fit; 2 does not (11): new row; 8 fits beside it exactly; 1 opens a third row
    assert row.tolist() == [0, 0, 1, 1, 2] and offset.tolist() == [0, 6, 0, 2, 0]
    assert segment.tolist() == [1, 2, 1, 2, 1] and n_rows == 3


def test_split_pieces_exact_multiples():
    doc, start, length = split_pieces(np.array([8, 3, 9], dtype=np.int64), 4)
    assert doc.tolist() == [0, 0, 1, 2, 2, 2]
    assert length.tolist() == [4, 4, 3, 4, 4, 1]
    assert start.tolist() == [0, 4, 8, 11, 15, 19]


def test_pack_rejects_empty_documents_and_bad_lengths():
    with pytest.raises(ValueError):
        pack(np.zeros(3, np.int32), np.array([3, 0]), 8, 0)
    with pytest.raises(ValueError):
        pack(np.zeros(3, np.int32), np.array([2]), 8, 0)


def test_permute_rows_is_seeded_and_a_permutation():
    tokens, lengths = _docs(5, 200, 64)
    rows = pack(tokens, lengths, 64, 0)
    a, b = permute_rows(rows, (0, 3)), permute_rows(rows, (0, 3))
    assert np.array_equal(a.input_ids, b.input_ids)
    assert not np.array_equal(a.input_ids, permute_rows(rows, (0, 4)).input_ids)
    assert sorted(map(bytes, a.input_ids)) == sorted(map(bytes, rows.input_ids))


@pytest.mark.parametrize("method", [PackingMethod.BEST_FIT, PackingMethod.GREEDY])
def test_every_segment_names_its_document_also_after_shuffling(method):
    tokens, lengths = _docs(11, 300, 64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ids = np.arange(len(lengths)) * 3 + 1000  # any int64 ids
    for rows in (pack(tokens, lengths, 64, 0, method, np.int32),
                 permute_rows(pack(tokens, lengths, 64, 0, method, np.int32), (5, 2))):
        values, offsets = rows.segment_values(ids)
        assert offsets[-1] == rows.pieces
        for r in range(rows.rows):
            named = values[offsets[r]:offsets[r + 1]]
            seg, row_ids = rows.segment_ids[r], rows.input_ids[r]
            assert len(named) == int(seg.max())
            for k, doc_id in enumerate(named, start=1):
                doc = (doc_id - 1000) // 3
                piece, where = row_ids[seg == k], rows.positions[r][seg == k]
                document = tokens[starts[doc]:starts[doc] + lengths[doc]]
                # the piece is a seq_len-aligned slice of the document it names
                assert any(np.array_equal(piece, document[o:o + len(piece)]) for o in range(0, len(document), 64))
                assert where[0] == 0


def test_next_token_targets_against_a_plain_loop():
    rows = pack(*_docs(4, 120, 32), 32, 0, PackingMethod.BEST_FIT, np.int32)
    targets, target_segments = next_token_targets(rows.input_ids, rows.segment_ids, pad_id=9)
    for r in range(rows.rows):
        ids, seg = rows.input_ids[r].tolist(), rows.segment_ids[r].tolist()
        for i in range(32):
            has_next = i + 1 < 32 and seg[i] > 0 and seg[i + 1] == seg[i]
            assert targets[r, i] == (ids[i + 1] if has_next else 9)
            assert target_segments[r, i] == (seg[i] if has_next else 0)
