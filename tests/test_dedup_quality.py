"""The dedup job against exact ground truth on a synthetic corpus with planted near duplicates."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.synthetic_corpus import generate
from pipelines.config import LshConfig, VerifyMode
from tests.dedup_helpers import dedup, read_rows

THRESHOLD = 0.7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    corpus = generate(n_families=250, copies=3, short_docs=120, exact_families=25, seed=11)
    path = tmp_path_factory.mktemp("synthetic") / "corpus.parquet"
    pq.write_table(pa.table({"id": corpus.ids, "content": corpus.texts}), path)
    return corpus, path


def evaluate(corpus, out):
    removed = {r["doc_id"]: r for r in read_rows(out / "duplicates")}
    kept = {r["doc_id"] for r in read_rows(out / "data")}
    cluster = {i: removed[i]["cluster_id"] if i in removed else i for i in corpus.ids}
    truth = corpus.true_pairs(THRESHOLD)
    found = sum(cluster[a] == cluster[b] for a, b in truth)
    families_kept = {corpus.family[i] for i in kept}
    lost = len(set(corpus.family) - families_kept)
    false_merges = sum(corpus.family[i] != corpus.family[r["cluster_id"]] for i, r in removed.items())
    return {"true_pairs": len(truth), "pair_recall": found / len(truth), "families_lost": lost,
            "false_merges": false_merges, "removed": len(removed), "kept": len(kept)}


def test_verified_dedup_loses_no_distinct_document(spark, corpus, tmp_path):
    corpus, path = corpus
    result = dedup(spark, path, tmp_path / "out", id_column="id")
    metrics = evaluate(corpus, tmp_path / "out")
    print("verified:", json.dumps(metrics))
    assert metrics["families_lost"] == 0
    assert metrics["false_merges"] == 0
    assert metrics["pair_recall"] >= 0.95
    # every short document (fewer words than the shingle size) is its own distinct document
    stats = result.stats
    assert stats["kept"] + stats["exact_duplicates"] + stats["near_duplicates"] == len(corpus.ids)
    assert stats["exact_duplicates"] >= 25 * 3


def test_without_verification_boilerplate_families_are_chained_and_lost(spark, corpus, tmp_path):
    """The failure mode verification exists for: chance LSH edges merge distinct documents."""
    corpus, path = corpus
    dedup(spark, path, tmp_path / "out", id_column="id", lsh=LshConfig(threshold=THRESHOLD, verify=VerifyMode.OFF))
    metrics = evaluate(corpus, tmp_path / "out")
    print("unverified:", json.dumps(metrics))
    assert metrics["pair_recall"] >= 0.95
    assert metrics["families_lost"] > 0 and metrics["false_merges"] > 0
