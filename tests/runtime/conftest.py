"""Fixtures: a small packed corpus in the pack job's on-disk format, and tiny model configs.

The shards are written through the project's own writers (``schemas.packed`` for the
Parquet schema, file names and manifest validation; ``udfs.tfrecord`` for TFRecord), from
the sample corpus tokenized with a small byte-level BPE trained on it.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

from schemas.packed import FORMAT_VERSION, shard_file, shard_schema, token_dtype_for, validate_manifest
from udfs.tfrecord import encode_example, write_records

EOS = "<|endoftext|>"
SEQ_LEN = 64
SHARD_ROWS = (23, 40, 31)  # uneven on purpose: no shard boundary lines up with a batch


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def _pack(docs: list[list[int]], rows: int, pad_id: int) -> dict[str, np.ndarray]:
    """Greedy packing that splits documents across rows, as the pack job's greedy mode does."""
    out = {k: np.zeros((rows, SEQ_LEN), np.int64) for k in ("input_ids", "segment_ids", "positions")}
    out["input_ids"][:] = pad_id
    doc_iter = iter(docs)
    pending: list[int] = []
    for r in range(rows):
        col, seg = 0, 0
        # leave a few rows with padding at the end by stopping early on every 5th row
        limit = SEQ_LEN - 7 if r % 5 == 4 else SEQ_LEN
        while col < limit:
            if not pending:
                pending = next(doc_iter)
            take = pending[:limit - col]
            pending = pending[len(take):]
            seg += 1
            out["input_ids"][r, col:col + len(take)] = take
            out["segment_ids"][r, col:col + len(take)] = seg
            out["positions"][r, col:col + len(take)] = np.arange(len(take))
            col += len(take)
    return out


def write_packed_corpus(root: str, texts: list[str], shard_rows: tuple[int, ...],
                        vocab_size: int = 512) -> str:
    tok = _train_tokenizer(texts, vocab_size)
    eos = tok.token_to_id(EOS)
    vocab = tok.get_vocab_size()
    docs = [enc.ids + [eos] for enc in tok.encode_batch(texts)]
    tok.save(os.path.join(root, "tokenizer.json"))
    packed = _pack(docs * 3, sum(shard_rows), eos)
    dtype = token_dtype_for(vocab)
    schema = shard_schema(dtype)
    entries = {"parquet": [], "tfrecord": []}
    start = 0
    for k, rows in enumerate(shard_rows):
        part = {name: a[start:start + rows] for name, a in packed.items()}
        start += rows
        for fmt in entries:
            path = os.path.join(root, shard_file(fmt, k))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if fmt == "parquet":
                arrays = [pa.array(list(part[f.name]), type=f.type) for f in schema]
                pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
            else:
                write_records(path, (encode_example({n: part[n][i] for n in part}) for i in range(rows)))
            tokens = int((part["segment_ids"] > 0).sum())
            entries[fmt].append({"file": shard_file(fmt, k), "rows": rows, "tokens": tokens,
                                 "padding_tokens": rows * SEQ_LEN - tokens,
                                 "documents": int(part["segment_ids"].max(axis=1).sum()),
                                 "sha256": _sha256(path), "bytes": os.path.getsize(path)})
    totals = {key: sum(e[key] for e in entries["parquet"])
              for key in ("rows", "tokens", "padding_tokens", "documents")}
    totals["shards"] = len(shard_rows)
    manifest = {"format_version": FORMAT_VERSION, "seq_len": SEQ_LEN, "vocab_size": vocab,
                "token_dtype": dtype, "pad_id": eos, "eos_id": eos, "bos_id": None,
                "tokenizer": "tokenizer.json", "tokenizer_sha256": _sha256(os.path.join(root, "tokenizer.json")),
                "packing": "greedy", "shards": entries, "totals": totals,
                "stats": {"fill_rate": totals["tokens"] / (totals["rows"] * SEQ_LEN),
                          "documents": totals["documents"], "documents_split": 0,
                          "fraction_split": 0.0, "tokens_dropped": 0},
                "source": {"path": "samples/hf_blog_sample.parquet"}, "dedup_stats": None}
    validate_manifest(manifest)
    with open(os.path.join(root, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)
    return root


@pytest.fixture(scope="session")
def sample_texts(samples_dir) -> list[str]:
    table = pq.read_table(os.path.join(samples_dir, "hf_blog_sample.parquet"), columns=["content"])
    return [t for t in table.column("content").to_pylist() if t]


@pytest.fixture(scope="session")
def packed_dir(tmp_path_factory, sample_texts) -> str:
    # short document heads keep many document boundaries inside every row
    heads = [t[:300] for t in sample_texts]
    return write_packed_corpus(str(tmp_path_factory.mktemp("packed")), heads, SHARD_ROWS)


@pytest.fixture(scope="session")
def tiny_model_config(tmp_path_factory, packed_dir) -> str:
    """A 2-layer Llama config (hidden 64) sized to the packed corpus' vocabulary."""
    from transformers import LlamaConfig

    with open(os.path.join(packed_dir, "manifest.json")) as fh:
        vocab = json.load(fh)["vocab_size"]
    path = str(tmp_path_factory.mktemp("config"))
    LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                tie_word_embeddings=True).save_pretrained(path)
    return path
