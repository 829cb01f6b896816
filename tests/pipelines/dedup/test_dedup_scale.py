"""Hub handling, giant-cluster reporting and layout independence of the dedup job.

``hub_degree`` is set far below its default here so that the broadcast path of every hub join
(components, exact groups, survivors) runs on a small graph; its answers must equal scipy's and
the shuffled path's. The million-node version is ``benchmarks/cc_scale.py``.
"""

import json

import numpy as np
import pyarrow.parquet as pq

from benchmarks.synthetic_corpus import generate
from pipelines.dedup.components import connected_components
from tests.pipelines.dedup.dedup_helpers import dedup, read_rows
from tests.pipelines.dedup.test_components import scipy_labels


def test_components_with_broadcast_hubs_equal_scipy(spark, tmp_path):
    rng = np.random.default_rng(5)
    star = np.stack([np.full(2000, 17), rng.choice(10**9, 2000, replace=False) + 100], axis=1)
    chain = np.stack([np.arange(3000, 3400), np.arange(3001, 3401)], axis=1)
    hub_of_hubs = np.stack([np.full(300, 3000), star[:300, 1]], axis=1)  # joins the star to the chain
    edges = np.concatenate([star, chain, hub_of_hubs, rng.integers(10**10, 10**10 + 500, size=(400, 2))])
    edges = edges[edges[:, 0] != edges[:, 1]]
    frame = spark.createDataFrame([(int(s), int(d)) for s, d in edges], "src long, dst long")

    def checkpoint(df, name):
        path = str(tmp_path / name)
        df.write.parquet(path)
        return spark.read.parquet(path)

    result = connected_components(frame, checkpoint, max_rounds=100, hub_degree=50)
    assert {r["doc_id"]: r["root"] for r in result.labels.collect()} == scipy_labels(edges)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_same_survivors_across_layouts_partitions_and_hub_joins(spark, tmp_path):
    corpus = generate(n_families=30, copies=4, short_docs=10, exact_families=5, boilerplate_families=5, seed=7)
    rows = [{"content": t, "family": f} for t, f in zip(corpus.texts, corpus.family)]
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    _write_jsonl(one / "all.jsonl", rows)
    reordered = rows[::-1]
    for k in range(5):
        _write_jsonl(many / f"part-{k}.jsonl", reordered[k::5])

    first = dedup(spark, one, tmp_path / "a", giant_cluster_size=4).stats
    saved = {k: spark.conf.get(k) for k in ("spark.sql.shuffle.partitions", "spark.sql.files.maxPartitionBytes")}
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16384")
    try:
        second = dedup(spark, many, tmp_path / "b", giant_cluster_size=4, hub_degree=2).stats
    finally:
        for key, value in saved.items():
            spark.conf.set(key, value)

    duplicates = read_rows(tmp_path / "a" / "duplicates")
    assert read_rows(tmp_path / "a" / "data") == read_rows(tmp_path / "b" / "data")
    assert duplicates == read_rows(tmp_path / "b" / "duplicates")
    counts = ("exact_duplicates", "near_duplicates", "kept", "clusters", "largest_cluster")
    assert [first[k] for k in counts] == [second[k] for k in counts]
    assert first["exact_duplicates"] >= 20 and first["near_duplicates"] > 0
    # the guard lists every cluster of >= 4 documents with its true size and members as samples
    members = {}
    for row in duplicates:
        members.setdefault(row["cluster_id"], set()).add(row["doc_id"])
    big = {c: len(m) + 1 for c, m in members.items() if len(m) + 1 >= 4}
    assert first["giant_cluster_count"] == len(big) > 0
    listed = first["giant_clusters"]
    assert listed == second["giant_clusters"]
    assert len(listed) == min(20, len(big))
    assert [g["size"] for g in listed] == sorted(big.values(), reverse=True)[:len(listed)]
    for g in listed:
        assert g["size"] == big[g["cluster_id"]]
        assert 1 <= len(g["sample_ids"]) <= 5 and set(g["sample_ids"]) <= members[g["cluster_id"]]
    assert pq.read_table(str(tmp_path / "a" / "data")).num_rows == first["kept"]
