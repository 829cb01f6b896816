"""Stage 5: connected components by alternating large-star / small-star (Kiveris et al., 2014).

Edges are kept canonical, ``src > dst``. With ``Γ(u)`` the neighbours of ``u`` and
``m(u) = min(Γ(u) ∪ {u})``:

* **large-star** links every *larger* neighbour ``v > u`` of ``u`` to ``m(u)``;
* **small-star** links ``u`` and its *smaller* neighbours to the smallest of them.

Both preserve connectivity and neither ever raises a node's label, so the pair converges to
one star per component centred on its minimum id, in O(log² n) rounds (in practice a handful;
long chains are the slow case). Each round is written to Parquet and read back, cutting the
lineage; the loop stops when a round leaves the edge set unchanged (compared by a 128-bit
fingerprint of the set, one aggregate per round).

Every step is a group-by on ids (a streaming partial aggregate, whatever a node's degree) plus
a join of edges to one ``m`` per node — no node's neighbour list is ever collected into one
row. The join is where a hub would concentrate: nodes of degree ``>= hub_degree`` have their
``m`` broadcast instead (``pipelines.dedup.skew``), so no task receives a hub's neighbour list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.config import DedupConfig
from pipelines.dedup.skew import hub_join
from schemas.tables import DOC_ID


@dataclass
class Components:
    labels: DataFrame  # (doc_id, root): every node of the graph, root = smallest id of its component
    rounds: int


def canonical(edges: DataFrame) -> DataFrame:
    """Distinct ``(src, dst)`` with ``src > dst``; self-loops dropped."""
    return (edges.select(F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst"))
            .filter(F.col("src") != F.col("dst")).distinct())


def large_star(edges: DataFrame, hub_degree: int) -> DataFrame:
    both = edges.select(F.col("src").alias("node"), F.col("dst").alias("nbr")).unionByName(
        edges.select(F.col("dst").alias("node"), F.col("src").alias("nbr")))
    smallest = both.groupBy("node").agg(F.least(F.col("node"), F.min("nbr")).alias("m"),
                                        F.count(F.lit(1)).alias("degree"))
    larger = both.filter(F.col("nbr") > F.col("node"))
    return (hub_join(larger, smallest, "node", "degree", hub_degree)
            .select(F.col("nbr").alias("src"), F.col("m").alias("dst")).distinct())


def small_star(edges: DataFrame, hub_degree: int) -> DataFrame:
    smallest = edges.groupBy("src").agg(F.min("dst").alias("m"), F.count(F.lit(1)).alias("degree"))
    leaves = (hub_join(edges, smallest, "src", "degree", hub_degree).filter(F.col("dst") != F.col("m"))
              .select(F.col("dst").alias("src"), F.col("m").alias("dst")))
    centre = smallest.select("src", F.col("m").alias("dst"))
    return leaves.unionByName(centre).distinct()


def edge_set_fingerprint(edges: DataFrame) -> tuple:
    """``(size, two 64-bit sums of seeded hashes)`` of a set of distinct edges, in one pass.

    Equal sets give equal fingerprints; two different sets of equal size collide only if two
    independent 64-bit sums agree (probability about 2**-128), so comparing fingerprints is
    the convergence test without a join of consecutive rounds.
    """
    sums = [F.sum(F.xxhash64(F.lit(seed), "src", "dst").cast("decimal(38,0)")) for seed in (1, 2)]
    row = edges.agg(F.count(F.lit(1)), *sums).first()
    return tuple(row)


def connected_components(edges: DataFrame, checkpoint: Callable[[DataFrame, str], DataFrame],
                         max_rounds: int, hub_degree: int = DedupConfig.hub_degree) -> Components:
    """Label every node of ``edges`` with its component's smallest id.

    ``checkpoint(df, name)`` must persist ``df`` durably and return it read back.
    """
    current = checkpoint(canonical(edges), "cc-input")
    fingerprint = edge_set_fingerprint(current)
    rounds = 0
    while True:
        if rounds >= max_rounds:
            raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
        rounds += 1
        nxt = checkpoint(small_star(large_star(current, hub_degree), hub_degree), f"cc-round-{rounds:03d}")
        next_fingerprint = edge_set_fingerprint(nxt)
        current = nxt
        if next_fingerprint == fingerprint:  # a round that changes nothing: converged
            break
        fingerprint = next_fingerprint
    roots = current.select(F.col("dst").alias(DOC_ID)).distinct().join(
        current.select(F.col("src").alias(DOC_ID)), DOC_ID, "left_anti")
    labels = current.select(F.col("src").alias(DOC_ID), F.col("dst").alias("root")).unionByName(
        roots.select(DOC_ID, F.col(DOC_ID).alias("root")))
    return Components(labels, rounds)
