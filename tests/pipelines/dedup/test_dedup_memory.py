"""The dedup job under ``spark-submit`` with Spark's default memory (a 1 GB driver) on documents of 100 KB–10 MB.

Spark's Parquet reader decodes 4,096 rows per batch into one contiguous buffer, and a Parquet
writer measures its buffers only every 100 rows and keeps the min and max text of every row
group until its file closes: with documents of megabytes each is hundreds of megabytes on a
1 GB heap. The corpus is written with row groups of about 32 MB of text, as a writer sizing
them by bytes would. Before the job sized reader batches and writer checks by bytes this run
failed with ``OutOfMemoryError`` in the stage that writes ``data/``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def words(rng: np.random.Generator, n_bytes: int) -> str:
    """About ``n_bytes`` of random 6-letter words (20,000 of them), separated by spaces."""
    vocabulary = rng.integers(ord("a"), ord("z") + 1, size=(20_000, 7), dtype=np.uint8)
    vocabulary[:, 6] = ord(" ")
    return vocabulary[rng.integers(0, len(vocabulary), n_bytes // 7)].tobytes().decode("ascii")


def large_document_corpus(path, n_docs: int = 100, group_bytes: int = 32_000_000) -> list[tuple[int, int]]:
    """Documents of 100 KB–10 MB (log-uniform); every fifth is its predecessor with one word
    inserted in the middle (a near duplicate). Returns those ``(original, copy)`` id pairs."""
    rng = np.random.default_rng(0)
    sizes = np.exp(rng.uniform(np.log(100e3), np.log(10e6), n_docs)).astype(int)
    texts = [words(rng, int(s)) for s in sizes]
    pairs = [(k - 1, k) for k in range(1, n_docs, 5)]
    for a, b in pairs:
        texts[b] = texts[a][:len(texts[a]) // 2] + "inserted " + texts[a][len(texts[a]) // 2:]
    table = pa.table({"id": np.arange(n_docs), "content": texts})
    with pq.ParquetWriter(path, table.schema) as writer:
        start, size = 0, 0
        for k, text in enumerate(texts):
            size += len(text)
            if size >= group_bytes or k == n_docs - 1:
                writer.write_table(table.slice(start, k + 1 - start))
                start, size = k + 1, 0
    return pairs


def test_default_memory_spark_submit_on_megabyte_documents(tmp_path):
    corpus, out = tmp_path / "large.parquet", tmp_path / "out"
    pairs = large_document_corpus(corpus)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_SUBMIT"))}
    env.update(PYTHONPATH=ROOT, PYSPARK_PYTHON=sys.executable)
    spark_submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    run = subprocess.run([spark_submit, "--master", "local[2]", os.path.join(ROOT, "jobs", "dedup.py"),
                          "--input", str(corpus), "--output", str(out), "--quiet"],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-5000:]
    kept = set(pq.read_table(out / "data", columns=["id"]).column("id").to_pylist())
    # exactly one of each planted pair is removed, and nothing else
    assert len(kept) == 100 - len(pairs) == pq.read_table(out / "data").num_rows
    assert all((a in kept) != (b in kept) for a, b in pairs)
    assert set(range(100)) - kept <= {x for pair in pairs for x in pair}
