"""Fixtures: packed corpora written by the real pack job, and a tiny model config.

``pack_texts`` runs ``pipelines.pack.pipeline.run_pack`` (tokenizer trained on the texts,
best-fit packing) on the shared local SparkSession, so the runtime is tested on exactly the
shards and manifest the pipeline produces.
"""

from __future__ import annotations

import functools
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import InputConfig, PackConfig, TokenizerConfig
from pipelines.pack.pipeline import run_pack

SEQ_LEN = 64


def pack_texts(spark, texts: list[str], root: str, num_shards: int, vocab_size: int = 512) -> str:
    """Pack ``texts`` into ``root/packed`` (Parquet + TFRecord shards, manifest, tokenizer)."""
    source = os.path.join(root, "corpus")
    os.makedirs(source)
    pq.write_table(pa.table({"content": texts}), os.path.join(source, "part-0.parquet"))
    cfg = PackConfig(input=InputConfig(path=source), output=os.path.join(root, "packed"), seq_len=SEQ_LEN,
                     num_shards=num_shards, tokenizer=TokenizerConfig(train=True, vocab_size=vocab_size,
                                                                      bos_token="<|bos|>"))
    return run_pack(cfg, spark=spark).output


@pytest.fixture(scope="session")
def packer(spark):
    """``pack_texts`` bound to the shared SparkSession."""
    return functools.partial(pack_texts, spark)


@pytest.fixture(scope="session")
def sample_texts(samples_dir) -> list[str]:
    table = pq.read_table(os.path.join(samples_dir, "hf_blog_sample.parquet"), columns=["content"])
    return [t for t in table.column("content").to_pylist() if t]


@pytest.fixture(scope="session")
def packed_dir(packer, tmp_path_factory, sample_texts) -> str:
    # the posts' sections (cut at 300 characters) as documents: boundaries inside most 64-token rows
    sections = [s.strip()[:300] for t in sample_texts for s in t.split(" ## ") if s.strip()][:300]
    return packer(sections, str(tmp_path_factory.mktemp("packed")), num_shards=3)


@pytest.fixture(scope="session")
def tiny_model_config(tmp_path_factory) -> str:
    """A 2-layer Llama config (hidden 64); the trainer sizes its vocabulary from the manifest."""
    from transformers import LlamaConfig

    path = str(tmp_path_factory.mktemp("config"))
    LlamaConfig(vocab_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True).save_pretrained(path)
    return path
