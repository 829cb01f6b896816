"""Connected components against scipy's connected_components and a union-find on the same graphs:
the large-star/small-star rounds, and the one-task labelling of small graphs."""

import itertools
import logging

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


def union_find_labels(edges: np.ndarray) -> dict[int, int]:
    """node → smallest node id of its component, by a plain union-find (independent of scipy)."""
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, d in edges.tolist():
        a, b = find(s), find(d)
        parent[max(a, b)] = min(a, b)  # the root of a set is always its smallest member
    return {node: find(node) for node in list(parent)}


def run_spark(spark, tmp_path, edges: np.ndarray, local_edges: int = 0, edges_at_most: int | None = None):
    frame = spark.createDataFrame([(int(s), int(d)) for s, d in edges], "src long, dst long")

    def checkpoint(df, name):
        path = str(tmp_path / f"{next(_counter)}-{name}")
        df.write.parquet(path)
        return spark.read.parquet(path)

    result = connected_components(frame, checkpoint, max_rounds=100, local_edges=local_edges,
                                  edges_at_most=edges_at_most)
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


@pytest.mark.parametrize("name", list(graphs()))
def test_small_graphs_labelled_in_one_task_equal_union_find(spark, tmp_path, name):
    edges = graphs()[name]
    labels, rounds = run_spark(spark, tmp_path, edges, local_edges=len(edges))
    assert labels == union_find_labels(edges[edges[:, 0] != edges[:, 1]])
    assert rounds == 0


@pytest.mark.parametrize("name", ["star", "many_small", "self_loops_and_duplicates"])
def test_a_known_bound_within_the_limit_labels_in_one_task_without_a_shape_query(spark, tmp_path, caplog, name):
    """The run's verified edge count bounds the graph: within the one-task limit, no shape query."""
    caplog.set_level(logging.INFO, logger="corpus_prep")
    edges = graphs()[name]
    labels, rounds = run_spark(spark, tmp_path, edges, local_edges=len(edges), edges_at_most=len(edges))
    assert labels == union_find_labels(edges[edges[:, 0] != edges[:, 1]]) and rounds == 0
    lines = [r.getMessage() for r in caplog.records if "dedup components round" in r.getMessage()]
    assert lines == [f"dedup components round 0: {len(edges):,} edges at most, labelled in one task"]


def test_a_known_bound_beyond_the_limit_goes_through_rounds(spark, tmp_path):
    chain = graphs()["chain"]
    labels, rounds = run_spark(spark, tmp_path, chain, local_edges=len(chain) - 1, edges_at_most=len(chain))
    assert rounds >= 3 and labels == union_find_labels(chain)


def test_graphs_beyond_the_one_task_limit_go_through_rounds(spark, tmp_path):
    chain = graphs()["chain"]
    labels, rounds = run_spark(spark, tmp_path, chain, local_edges=len(chain) - 1)
    assert rounds >= 3 and labels == union_find_labels(chain)


def test_rounds_stop_at_the_forest_of_stars(spark, tmp_path):
    """A star needs no round; a scrambled chain needs several; the empty graph none."""
    assert run_spark(spark, tmp_path, graphs()["star"])[1] == 0
    assert run_spark(spark, tmp_path, graphs()["chain"])[1] >= 3
    labels, rounds = run_spark(spark, tmp_path, np.zeros((0, 2), dtype=np.int64))
    assert labels == {} and rounds == 0
