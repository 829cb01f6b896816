"""Fixtures: packed corpora written by the real pack job, and a tiny model config.

``pack_texts`` runs ``pipelines.pack.pipeline.run_pack`` (tokenizer trained on the texts,
best-fit packing) on the shared local SparkSession, so the runtime is tested on exactly the
shards and manifest the pipeline produces.
"""

from __future__ import annotations

import functools
import os
import random
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import InputConfig, PackConfig, TokenizerConfig
from pipelines.pack.pipeline import run_pack

SEQ_LEN = 64


# an encoder (BERT-style) tokenizer: each document packed as [CLS] text [SEP]
ENCODER_TOKENIZER = {"model": "wordpiece", "bos_token": "[CLS]", "eos_token": "[SEP]", "pad_token": "[PAD]",
                     "mask_token": "[MASK]"}


def pack_texts(spark, texts: list[str], root: str, num_shards: int, vocab_size: int = 512, **tokenizer) -> str:
    """Pack ``texts`` into ``root/packed`` (Parquet + TFRecord shards, manifest, tokenizer).

    ``tokenizer``: TokenizerConfig fields (default: byte-level BPE with ``<|bos|>``).
    """
    source = os.path.join(root, "corpus")
    os.makedirs(source)
    pq.write_table(pa.table({"content": texts}), os.path.join(source, "part-0.parquet"))
    cfg = PackConfig(input=InputConfig(path=source), output=os.path.join(root, "packed"), seq_len=SEQ_LEN,
                     num_shards=num_shards, tokenizer=TokenizerConfig(
                         train=True, vocab_size=vocab_size, **(tokenizer or {"bos_token": "<|bos|>"})))
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


PANTRY = ("apple bread cheese dates eggs figs grapes honey rice soup tea milk corn beans nuts plums kale leek "
          "mint oats pear lime salt yam chard olive onion pepper melon cherry").split()


def pantry_documents(count: int, seed: int = 0) -> list[str]:
    """Documents of 8-24 words drawn from two words of ``PANTRY`` chosen per document.

    A masked word is one of its document's two words: bidirectional context within the
    document predicts it (about log 2 nats), the corpus' unigram distribution cannot (about
    log 30), and context leaking from other documents of the row would only mislead.
    """
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        pair = rng.sample(PANTRY, 2)
        docs.append(" ".join(rng.choice(pair) for _ in range(rng.randint(8, 24))))
    return docs


@pytest.fixture(scope="session")
def encoder_packed_dir(packer, tmp_path_factory) -> str:
    """2,500 pantry documents (~720 rows) packed for an encoder: WordPiece, [CLS] text [SEP], [PAD], [MASK]."""
    return packer(pantry_documents(2500), str(tmp_path_factory.mktemp("encoder_packed")), num_shards=3,
                  vocab_size=300, **ENCODER_TOKENIZER)


@pytest.fixture(scope="session")
def tiny_bert_config(tmp_path_factory) -> str:
    """A 2-layer BERT (hidden 64) without dropout; the trainer sizes its vocabulary from the manifest."""
    from transformers import BertConfig

    path = str(tmp_path_factory.mktemp("bert_config"))
    BertConfig(vocab_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=SEQ_LEN, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def mlm_run(encoder_packed_dir, tiny_bert_config, tmp_path_factory) -> types.SimpleNamespace:
    """A short masked-LM run (80 steps of 8 rows, under one epoch); the inference tests use its checkpoint."""
    from runtime.checkpoints import latest_checkpoint
    from runtime.config import LoaderConfig, OptimConfig, TrainConfig
    from runtime.train import train

    steps, batch = 80, 8
    output = str(tmp_path_factory.mktemp("mlm") / "ckpt")
    result = train(TrainConfig(manifest=encoder_packed_dir, model_config=tiny_bert_config, output=output,
                               steps=steps, objective="mlm", progress=False, log_every=steps,
                               loader=LoaderConfig(batch_size=batch), optim=OptimConfig(lr=5e-3, warmup_steps=5)))
    return types.SimpleNamespace(checkpoint=latest_checkpoint(output), losses=result.losses, rows_seen=steps * batch)


@pytest.fixture(scope="session")
def tiny_model_config(tmp_path_factory) -> str:
    """A 2-layer Llama config (hidden 64); the trainer sizes its vocabulary from the manifest."""
    from transformers import LlamaConfig

    path = str(tmp_path_factory.mktemp("config"))
    LlamaConfig(vocab_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True).save_pretrained(path)
    return path
