"""Packing kernels, stream construction (BOS/EOS/cap), shard writers and the manifest validator (no Spark)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from pipelines.config import PackingMethod
from pipelines.pack.shards import ShardSpec, parquet_bytes, tfrecord_bytes
from schemas.packed import FEATURE_NAMES, ManifestError, shard_schema, validate_manifest
from udfs import megatron
from udfs.packing import (best_fit_decreasing, next_fit, next_token_targets, pack, permute_rows, split_pieces,
                          unpack_segments)
from udfs.tfrecord import decode_example
from udfs.tokenize import STATUS_EMPTY, STATUS_NULL, STATUS_OK, StreamSpec, build_streams, tokenize_batch


def _docs(seed: int, n: int, max_len: int):
    rng = np.random.default_rng(seed)
    lengths = np.maximum(1, (rng.pareto(1.1, n) * max_len / 8).astype(np.int64))
    lengths = np.minimum(lengths, 5 * max_len)
    tokens = rng.integers(3, 60000, int(lengths.sum())).astype(np.int32)
    return tokens, lengths


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


# ---------------------------------------------------------------------------------------
# Streams: BOS / EOS placement and the cap


def test_streams_place_bos_and_eos_explicitly():
    flat = np.array([10, 11, 12, 20, 30, 31], dtype=np.int32)
    lengths = np.array([3, 1, 2], dtype=np.int64)
    ids, offsets, dropped = build_streams(flat, lengths, StreamSpec("", eos_id=1, bos_id=2))
    assert ids.tolist() == [2, 10, 11, 12, 1, 2, 20, 1, 2, 30, 31, 1]
    assert offsets.tolist() == [0, 5, 8, 12] and dropped.tolist() == [0, 0, 0]
    ids, offsets, _ = build_streams(flat, lengths, StreamSpec("", eos_id=1))
    assert ids.tolist() == [10, 11, 12, 1, 20, 1, 30, 31, 1]


def test_cap_keeps_eos_and_counts_dropped_tokens():
    flat = np.arange(100, 110, dtype=np.int32)
    lengths = np.array([7, 3], dtype=np.int64)
    ids, offsets, dropped = build_streams(flat, lengths, StreamSpec("", eos_id=1, bos_id=2, max_doc_tokens=5))
    assert ids.tolist() == [2, 100, 101, 102, 1, 2, 107, 108, 109, 1]
    assert dropped.tolist() == [4, 0]


@pytest.fixture(scope="module")
def word_tokenizer():
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "[UNK]": 3}
    vocab.update({w: i + 4 for i, w in enumerate("the a cat dog sat on mat".split())})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def test_tokenize_batch_statuses_and_oracle(word_tokenizer):
    texts = pa.array(["the cat sat", None, "", "dog on the mat", "the cat sat", "   "])
    spec = StreamSpec(word_tokenizer.to_str(), eos_id=1, bos_id=2)
    out = tokenize_batch(texts, spec)
    assert out.column("status").to_pylist() == [STATUS_OK, STATUS_NULL, STATUS_EMPTY, STATUS_OK, STATUS_OK,
                                                STATUS_EMPTY]
    expected = [[2] + e.ids + [1] for e in word_tokenizer.encode_batch(["the cat sat", "dog on the mat"],
                                                                       add_special_tokens=False)]
    ids = out.column("ids").to_pylist()
    assert ids == [expected[0], [], [], expected[1], expected[0], []]
    hi, lo = out.column("key_hi").to_pylist(), out.column("key_lo").to_pylist()
    assert hi[0] == hi[4] and lo[0] == lo[4] and hi[0] != hi[3]
    import xxhash
    assert hi[3] == xxhash.xxh64_intdigest(b"dog on the mat", seed=0) - (1 << 64) * (hi[3] < 0)


def test_tokenizer_post_processor_cannot_add_a_second_bos(word_tokenizer):
    from tokenizers import processors

    tok = Tokenizer.from_str(word_tokenizer.to_str())
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    tok.enable_truncation(2)
    out = tokenize_batch(pa.array(["the cat sat on the mat"]), StreamSpec(tok.to_str(), eos_id=1, bos_id=2))
    assert out.column("ids").to_pylist() == [[2, 4, 6, 8, 9, 4, 10, 1]]  # no truncation, one BOS


# ---------------------------------------------------------------------------------------
# Shard writers


def _spec(dtype: str) -> ShardSpec:
    return ShardSpec(staging="", seq_len=16, pad_id=0, token_dtype=dtype, method=PackingMethod.BEST_FIT,
                     formats=("parquet", "tfrecord"), shuffle_rows=True, seed=0, compression="zstd",
                     row_group_rows=4)


@pytest.mark.parametrize("dtype,high", [("uint16", 65535), ("int32", 200_000)])
def test_parquet_and_tfrecord_hold_the_same_rows(dtype, high):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 30)
    tokens = rng.integers(0, high, int(lengths.sum())).astype(np.int32)
    tokens[0] = high
    np_dtype = np.uint16 if dtype == "uint16" else np.int32
    rows = pack(tokens, lengths, 16, 0, PackingMethod.BEST_FIT, np_dtype)
    doc_ids = rows.segment_values(np.arange(len(lengths), dtype=np.int64) * 7 - 50)
    table = pq.read_table(io.BytesIO(parquet_bytes(rows, _spec(dtype), doc_ids)))
    assert table.schema.equals(shard_schema(dtype))
    assert parquet_bytes(rows, _spec(dtype), doc_ids) == parquet_bytes(rows, _spec(dtype), doc_ids)
    data, records = tfrecord_bytes(rows, _spec(dtype), doc_ids), []
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 8], "little")
        records.append(decode_example(data[pos + 12:pos + 12 + n]))
        pos += n + 16
    assert len(records) == table.num_rows == rows.rows
    for name in ("input_ids", "segment_ids", "positions"):
        parquet_rows = np.array(table.column(name).to_pylist())
        assert np.array_equal(parquet_rows, np.stack([r[name] for r in records]))
    assert int(np.array(table.column("input_ids").to_pylist()).max()) == high
    assert table.column("doc_ids").to_pylist() == [r["doc_ids"].tolist() for r in records]
    assert [len(d) for d in table.column("doc_ids").to_pylist()] == [int(s.max()) for s in rows.segment_ids]


# ---------------------------------------------------------------------------------------
# Manifest validation


def _manifest():
    shard = {"rows": 2, "tokens": 30, "padding_tokens": 2, "documents": 3, "sha256": "0" * 64, "bytes": 10}
    return {
        "format_version": 2, "seq_len": 16, "vocab_size": 500, "token_dtype": "uint16", "pad_id": 0,
        "eos_id": 1, "bos_id": None, "tokenizer": "tokenizer.json", "tokenizer_sha256": "a" * 64,
        "packing": "best-fit",
        "shards": {"parquet": [dict(shard, file="parquet/part-00000.parquet")],
                   "tfrecord": [dict(shard, file="tfrecord/part-00000.tfrecord")]},
        "totals": {"rows": 2, "tokens": 30, "padding_tokens": 2, "documents": 3, "shards": 1},
        "stats": {"fill_rate": 30 / 32, "documents": 3, "documents_split": 0, "fraction_split": 0.0,
                  "tokens_dropped": 0},
        "source": {"path": "x"}, "dedup_stats": None,
    }


def test_manifest_validator_accepts_a_good_manifest():
    validate_manifest(json.loads(json.dumps(_manifest())))


@pytest.mark.parametrize("breakage,needle", [
    (lambda m: m.pop("seq_len"), "missing 'seq_len'"),
    (lambda m: m.update(token_dtype="int32"), "token_dtype"),
    (lambda m: m["shards"]["parquet"][0].update(tokens=31), "tokens + padding_tokens"),
    (lambda m: m["shards"]["tfrecord"][0].update(file="tfrecord/part-1.tfrecord"), "file"),
    (lambda m: m["totals"].update(rows=3), "totals.rows"),
    (lambda m: m.update(eos_id=500), "eos_id"),
    (lambda m: m["stats"].update(fill_rate=1.5), "fill_rate"),
    (lambda m: m.update(packing="first-fit"), "packing"),
])
def test_manifest_validator_rejects(breakage, needle):
    manifest = copy.deepcopy(_manifest())
    breakage(manifest)
    with pytest.raises(ManifestError, match=needle.replace("+", r"\+")):
        validate_manifest(manifest)


# ---------------------------------------------------------------------------------------
# Provenance, feature names, Megatron files


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


@pytest.mark.parametrize("scheme,columns", [
    ("default", ["input_ids", "segment_ids", "positions"]),
    ("seqio", ["targets", "targets_segment_ids", "targets_positions"]),
    ("maxtext", ["inputs", "inputs_segmentation", "inputs_position", "targets", "targets_segmentation",
                 "targets_position"]),
])
def test_feature_names_name_the_shard_columns(scheme, columns):
    rows = pack(*_docs(2, 50, 16), 16, 0, PackingMethod.BEST_FIT, np.uint16)
    spec = dataclasses.replace(_spec("uint16"), feature_names=scheme)
    table = pq.read_table(io.BytesIO(parquet_bytes(rows, spec, rows.segment_values(np.arange(50)))))
    assert table.column_names == [*columns, "doc_ids"]
    assert table.schema.equals(shard_schema("uint16", scheme))
    first = np.array(table.column(columns[0]).to_pylist())
    assert np.array_equal(first, rows.input_ids)


def test_megatron_index_round_trip_and_layout():
    lengths = np.array([3, 1, 70000, 5])
    data = megatron.index_bytes(lengths, np.uint16)
    assert data[:9] == b"MMIDIDX\x00\x00" and int.from_bytes(data[9:17], "little") == 1 and data[17] == 8
    assert int.from_bytes(data[18:26], "little") == 4 and int.from_bytes(data[26:34], "little") == 5
    dtype, got_lengths, pointers, documents = megatron.read_index(data)
    assert dtype == np.uint16 and got_lengths.tolist() == lengths.tolist()
    assert pointers.tolist() == [0, 6, 8, 140008] and documents.tolist() == [0, 1, 2, 3, 4]
    assert megatron.read_index(megatron.index_bytes(lengths, np.int32))[2].tolist() == [0, 12, 16, 280016]
    with pytest.raises(ValueError, match="header implies"):
        megatron.read_index(data[:-1])
    tokens = np.arange(10, dtype=np.int64)
    assert np.array_equal(np.frombuffer(megatron.data_bytes(tokens, np.uint16), "<u2"), tokens)


def test_manifest_validator_checks_features_and_megatron():
    manifest = copy.deepcopy(_manifest())
    manifest["features"] = {"scheme": "seqio", "columns": FEATURE_NAMES["seqio"], "doc_ids": "doc_ids"}
    file = {"prefix": "megatron/part-00000", "file": "megatron/part-00000.bin", "idx_file": "megatron/part-00000.idx",
            "documents": 3, "tokens": 30, "sha256": "0" * 64, "bytes": 60, "idx_sha256": "0" * 64, "idx_bytes": 99}
    manifest["megatron"] = {"documents": 3, "tokens": 30, "files": [file]}
    validate_manifest(manifest)
    only_megatron = dict(copy.deepcopy(manifest), shards={})
    validate_manifest(only_megatron)
    for breakage, needle in [(lambda m: m["features"].update(scheme="t5x"), "features.scheme"),
                             (lambda m: m["features"]["columns"].update(targets="positions"), "do not match"),
                             (lambda m: m["megatron"]["files"][0].update(tokens=29), "megatron.tokens"),
                             (lambda m: m["megatron"]["files"][0].update(idx_file="x.idx"), "megatron.files")]:
        broken = copy.deepcopy(manifest)
        breakage(broken)
        with pytest.raises(ManifestError, match=needle):
            validate_manifest(broken)
