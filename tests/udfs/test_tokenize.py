"""Token streams: BOS/EOS placement, the per-document cap, and batch tokenization (no Spark)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from udfs.tokenize import STATUS_EMPTY, STATUS_NULL, STATUS_OK, StreamSpec, build_streams, tokenize_batch


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
