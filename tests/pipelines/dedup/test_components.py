"""Large-star/small-star components against scipy's connected_components on the same graphs."""

import itertools

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from pipelines.dedup.components import connected_components

_counter = itertools.count()


def scipy_labels(edges: np.ndarray) -> dict[int, int]:
    """node → smallest node id of its component, computed by scipy on relabelled nodes."""
    nodes, inverse = np.unique(edges.reshape(-1), return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (inverse[:, 0], inverse[:, 1])), shape=(len(nodes),) * 2)
    _, comp = scipy_components(graph, directed=False)
    smallest = {}
    for node, c in zip(nodes, comp):
        smallest[c] = min(smallest.get(c, node), node)
    return {int(node): int(smallest[c]) for node, c in zip(nodes, comp)}


def run_spark(spark, tmp_path, edges: np.ndarray):
    frame = spark.createDataFrame([(int(s), int(d)) for s, d in edges], "src long, dst long")

    def checkpoint(df, name):
        path = str(tmp_path / f"{next(_counter)}-{name}")
        df.write.parquet(path)
        return spark.read.parquet(path)

    result = connected_components(frame, checkpoint, max_rounds=100)
    labels = {r["doc_id"]: r["root"] for r in result.labels.collect()}
    return labels, result.rounds


def graphs():
    rng = np.random.default_rng(3)
    chain = np.stack([np.arange(10_000), np.arange(1, 10_001)], axis=1)
    chain = chain[rng.permutation(len(chain))] * 7919 % 1_000_003  # scrambled ids along the chain
    star = np.stack([np.full(300, 5), np.arange(1000, 1300)], axis=1)
    small = rng.integers(0, 3000, size=(2000, 2))
    loops_and_repeats = np.concatenate([np.array([[1, 1], [2, 2], [2, 3], [3, 2], [2, 3]]), small[:10]])
    negative = np.array([[-5, 7], [7, -(2**62)], [2**62, 3]])
    return {"chain": chain, "star": star, "many_small": small, "self_loops_and_duplicates": loops_and_repeats,
            "negative_and_large_ids": negative}


@pytest.mark.parametrize("name", list(graphs()))
def test_components_equal_scipy(spark, tmp_path, name):
    edges = graphs()[name]
    labels, rounds = run_spark(spark, tmp_path, edges)
    expected = scipy_labels(edges[edges[:, 0] != edges[:, 1]])  # a self-loop alone is no duplicate
    assert labels == expected


def test_rounds_stop_at_the_forest_of_stars(spark, tmp_path):
    """A star needs no round; a scrambled chain needs several; the empty graph none."""
    assert run_spark(spark, tmp_path, graphs()["star"])[1] == 0
    assert run_spark(spark, tmp_path, graphs()["chain"])[1] >= 3
    labels, rounds = run_spark(spark, tmp_path, np.zeros((0, 2), dtype=np.int64))
    assert labels == {} and rounds == 0
