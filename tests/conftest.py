"""Shared fixtures: one local SparkSession for the whole test session."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

# Optional dependencies whose tests must run, not skip (CI sets it per environment, e.g. "megatron.core").
REQUIRED = tuple(m for m in os.environ.get("CORPUS_PREP_REQUIRE", "").split(",") if m)


def required(skip, reason: str, module: str):
    """``skip(reason)``, unless ``module`` is required here: then the test fails."""
    if any(module == m or module.startswith(m + ".") for m in REQUIRED):
        pytest.fail(f"{reason} (required by CORPUS_PREP_REQUIRE)")
    skip(reason)


def optional_import(module: str):
    """Import an optional dependency, or skip the calling test module without it (fail if it is required)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        required(lambda reason: pytest.skip(reason, allow_module_level=True), f"{module} is not installed ({err})",
                 module)


@pytest.fixture(scope="session")
def spark():
    from pipelines.config import SparkConfig
    from pipelines.spark_session import get_spark

    session = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, ui=False,
                                    log_level="ERROR", driver_memory="2g"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def samples_dir():
    return os.path.join(ROOT, "samples")


def random_documents(seed: int, n: int, max_len: int):
    """``(tokens, lengths)``: ``n`` documents of heavy-tailed lengths (up to ``5 * max_len``), random ids."""
    import numpy as np  # imported here: the DAG tests' environment has no numpy

    rng = np.random.default_rng(seed)
    lengths = np.maximum(1, (rng.pareto(1.1, n) * max_len / 8).astype(np.int64))
    lengths = np.minimum(lengths, 5 * max_len)
    tokens = rng.integers(3, 60000, int(lengths.sum())).astype(np.int32)
    return tokens, lengths


def train_local_tokenizer(texts: list[str], path: str, vocab_size: int = 400,
                          special_tokens: tuple[str, ...] = ("<|pad|>", "<|endoftext|>", "<|bos|>")):
    """A small byte-level BPE trained on ``texts`` and saved at ``path``: the local tokenizer.json
    the tests hand to the jobs (nothing is downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path))
    return tok


def tfrecord_records(path) -> list[bytes]:
    """The records of a TFRecord file, their framing and CRCs checked (``CorruptShardError`` naming ``path``)."""
    from udfs.tfrecord import scan_records

    with open(path, "rb") as fh:
        contents = fh.read()
    starts, lengths = scan_records(contents, str(path))
    return [contents[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())]
