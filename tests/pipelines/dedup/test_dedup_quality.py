"""The dedup job against exact ground truth (``benchmarks/exact_truth.py``), judged by exact Jaccard.

The corpus mixes planted families with version chains whose consecutive versions sit at
Jaccard 0.6–0.8, on both sides of the threshold: the pairs where a signature estimate errs,
and where a star on a bucket's smallest id misses links. Nothing is judged by planted labels:

* **lost**: true clusters (components of exact J >= t) of which no document was kept;
* **left in**: kept documents beyond the first of their true cluster;
* **false links**: removed documents whose ``linked_to`` is at exact J < t.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.exact_truth import true_clusters
from benchmarks.synthetic_corpus import generate, jaccard, word_shingles
from pipelines.config import LshConfig, VerifyMode
from tests.pipelines.dedup.dedup_helpers import dedup, read_rows

THRESHOLD = 0.7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    corpus = generate(n_families=200, copies=3, short_docs=100, exact_families=20, version_chains=80, seed=11)
    path = tmp_path_factory.mktemp("synthetic") / "corpus.parquet"
    pq.write_table(pa.table({"id": corpus.ids, "content": corpus.texts}), path)
    return corpus, path, true_clusters(corpus.ids, corpus.texts, THRESHOLD)


def evaluate(corpus, truth, out):
    removed = read_rows(out / "duplicates")
    kept = {r["doc_id"] for r in read_rows(out / "data")}
    clusters = set(truth.values())
    kept_per_cluster = {}
    for doc in kept:
        kept_per_cluster[truth[doc]] = kept_per_cluster.get(truth[doc], 0) + 1
    shingles = dict(zip(corpus.ids, (word_shingles(t, 5) for t in corpus.texts)))
    false_links = [r for r in removed if jaccard(shingles[r["doc_id"]], shingles[r["linked_to"]]) < THRESHOLD]
    return {"true_clusters": len(clusters), "kept": len(kept), "removed": len(removed),
            "lost": len(clusters - set(kept_per_cluster)),
            "left_in": sum(n - 1 for n in kept_per_cluster.values()),
            "false_links": len(false_links)}


def test_exact_verification_loses_no_true_cluster_and_links_only_true_duplicates(spark, corpus, tmp_path):
    corpus, path, truth = corpus
    result = dedup(spark, path, tmp_path / "out", id_column="id")
    metrics = evaluate(corpus, truth, tmp_path / "out")
    print("exact:", json.dumps(metrics), json.dumps(result.stats["exact_verification"]))
    assert metrics["false_links"] == 0  # every removed document: exact J >= t to its linked_to
    assert metrics["lost"] == 0
    assert metrics["left_in"] <= 0.01 * metrics["true_clusters"]
    stats = result.stats
    assert stats["kept"] + stats["exact_duplicates"] + stats["near_duplicates"] == len(corpus.ids)
    assert stats["exact_duplicates"] >= 20 * 3
    # the corpus does hold pairs the estimate alone would have linked; exact Jaccard refused them
    assert stats["exact_verification"]["estimate_passed_exact_failed"] > 0


def test_estimate_alone_links_documents_below_the_threshold(spark, corpus, tmp_path):
    """The failure exact verification exists for: borderline pairs pass on a lucky estimate."""
    corpus, path, truth = corpus
    dedup(spark, path, tmp_path / "out", id_column="id",
          lsh=LshConfig(threshold=THRESHOLD, verify=VerifyMode.ESTIMATE))
    metrics = evaluate(corpus, truth, tmp_path / "out")
    print("estimate:", json.dumps(metrics))
    assert metrics["false_links"] > 0


def test_without_verification_chance_collisions_chain_and_lose_true_clusters(spark, corpus, tmp_path):
    """Unverified LSH edges merge boilerplate families and version chains that are not duplicates."""
    corpus, path, truth = corpus
    dedup(spark, path, tmp_path / "out", id_column="id", lsh=LshConfig(threshold=THRESHOLD, verify=VerifyMode.OFF))
    metrics = evaluate(corpus, truth, tmp_path / "out")
    print("off:", json.dumps(metrics))
    assert metrics["lost"] > 0 and metrics["false_links"] > 0
