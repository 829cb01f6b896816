"""Stage 5: connected components by alternating large-star / small-star (Kiveris et al., 2014).

Edges are kept canonical, ``src > dst``. With ``Γ(u)`` the neighbours of ``u`` and
``m(u) = min(Γ(u) ∪ {u})``:

* **large-star** links every *larger* neighbour ``v > u`` of ``u`` to ``m(u)``;
* **small-star** links ``u`` and its *smaller* neighbours to the smallest of them.

Both preserve connectivity and neither ever raises a node's label, so the pair converges to
one star per component centred on its minimum id, in O(log² n) rounds (in practice a handful;
long chains are the slow case). Each round is written to Parquet and read back, cutting the
lineage. The fixed point is recognised by its shape, not by running one more round to see
nothing change: a canonical edge set is final exactly when it is a forest of stars — every
``src`` has one edge and no ``dst`` is also a ``src`` — and both steps leave such a set as it
is. One aggregate over the nodes per round tests this (:func:`star_shape`).

Every step is a group-by on ids (a streaming partial aggregate, whatever a node's degree) plus
a join of edges to one ``m`` per node — no node's neighbour list is ever collected into one
row. The join is where a hub would concentrate: nodes of degree ``>= hub_degree`` have their
``m`` broadcast instead (``pipelines.dedup.skew``), so no task receives a hub's neighbour list.
The same per-round aggregate gives the largest degree; a round without a hub uses plain
shuffled joins and skips the broadcast jobs. (Large-star gives a node ``v`` one edge per
smaller neighbour at most, so no node of the small-star input has more edges than its degree
in the round's input: the one test covers both steps.)

A graph of at most ``local_edges`` edges (the verified edges of a corpus of a few gigabytes are
tens of thousands) is not worth a round of shuffles: it goes to one task, which labels it with
SciPy's connected components (``udfs.graph``) in well under a second and about 100 bytes of
memory per edge. The rounds are for graphs beyond that, where no task may hold the graph.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from pipelines.arrow_tasks import map_in_arrow
from pipelines.config import DedupConfig
from pipelines.dedup.skew import hub_join
from schemas.dedup import DOC_ID
from udfs.graph import component_roots

# Graphs of up to this many edges are labelled in one task (about 200 MB of worker memory).
LOCAL_EDGES = 2_000_000
LABELS = StructType([StructField(DOC_ID, LongType(), False), StructField("root", LongType(), False)])

log = logging.getLogger("corpus_prep.dedup")


@dataclass
class Components:
    labels: DataFrame  # (doc_id, root): every node of the graph, root = smallest id of its component
    rounds: int


def canonical(edges: DataFrame) -> DataFrame:
    """Distinct ``(src, dst)`` with ``src > dst``; self-loops dropped."""
    return (edges.select(F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst"))
            .filter(F.col("src") != F.col("dst")).distinct())


@dataclass(frozen=True)
class StarShape:
    converged: bool  # the edges are a forest of stars centred on their minimum ids
    max_degree: int
    edges: int = 0


def star_shape(edges: DataFrame) -> StarShape:
    """Whether canonical ``edges`` are final, and their largest node degree, in one aggregate."""
    ends = edges.select(F.col("src").alias("node"), F.lit(1).alias("out")).unionByName(
        edges.select(F.col("dst").alias("node"), F.lit(0).alias("out")))
    nodes = ends.groupBy("node").agg(F.sum("out").alias("out"), F.count(F.lit(1)).alias("degree"))
    row = nodes.agg(F.max("out").alias("max_out"), F.max("degree").alias("max_degree"),
                    F.count_if((F.col("out") > 0) & (F.col("degree") > F.col("out"))).alias("middle"),
                    F.sum("out").alias("edges")).first()  # every edge adds 1 to its src's out
    if row["max_out"] is None:  # no edges
        return StarShape(True, 0)
    return StarShape(row["max_out"] <= 1 and row["middle"] == 0, row["max_degree"], int(row["edges"]))


def large_star(edges: DataFrame, hub_degree: int | None) -> DataFrame:
    both = edges.select(F.col("src").alias("node"), F.col("dst").alias("nbr")).unionByName(
        edges.select(F.col("dst").alias("node"), F.col("src").alias("nbr")))
    smallest = both.groupBy("node").agg(F.least(F.col("node"), F.min("nbr")).alias("m"),
                                        F.count(F.lit(1)).alias("degree"))
    larger = both.filter(F.col("nbr") > F.col("node"))
    return (hub_join(larger, smallest, "node", "degree", hub_degree)
            .select(F.col("nbr").alias("src"), F.col("m").alias("dst")).distinct())


def small_star(edges: DataFrame, hub_degree: int | None) -> DataFrame:
    smallest = edges.groupBy("src").agg(F.min("dst").alias("m"), F.count(F.lit(1)).alias("degree"))
    leaves = (hub_join(edges, smallest, "src", "degree", hub_degree).filter(F.col("dst") != F.col("m"))
              .select(F.col("dst").alias("src"), F.col("m").alias("dst")))
    centre = smallest.select("src", F.col("m").alias("dst"))
    return leaves.unionByName(centre).distinct()


def local_labels(edges: DataFrame) -> DataFrame:
    """``(doc_id, root)`` for every node of ``edges``, computed in one task (``LOCAL_EDGES`` at most)."""
    names = LABELS.fieldNames()

    def label(batches):
        src, dst = [], []
        for batch in batches:
            src.append(batch.column(0).to_numpy())
            dst.append(batch.column(1).to_numpy())
        if src:
            nodes, roots = component_roots(np.concatenate(src), np.concatenate(dst))
            yield pa.RecordBatch.from_arrays([pa.array(nodes), pa.array(roots)], names=names)

    return map_in_arrow(edges.select("src", "dst").repartition(1), label, LABELS)


def connected_components(edges: DataFrame, checkpoint: Callable[[DataFrame, str], DataFrame],
                         max_rounds: int, hub_degree: int = DedupConfig.hub_degree,
                         local_edges: int = LOCAL_EDGES, edges_at_most: int | None = None) -> Components:
    """Label every node of ``edges`` with its component's smallest id.

    ``checkpoint(df, name)`` must persist ``df`` durably and return it read back. ``rounds`` counts
    the large-star/small-star rounds run: 0 when the input is already a forest of stars or has at
    most ``local_edges`` edges (labelled in one task). ``edges_at_most``, a bound known beforehand
    (the run's verified edges), spares a graph within ``local_edges`` the query of its shape.
    """
    current = checkpoint(canonical(edges), "cc-input")
    if edges_at_most is not None and edges_at_most <= local_edges:
        log.info("dedup components round 0: %s edges at most, labelled in one task", f"{edges_at_most:,}")
        return Components(local_labels(current), 0)
    shape = star_shape(current)
    _log_round(0, shape)
    if not shape.converged and shape.edges <= local_edges:
        log.info("dedup components: %s edges labelled in one task", f"{shape.edges:,}")
        return Components(local_labels(current), 0)
    rounds = 0
    while not shape.converged:
        if rounds >= max_rounds:
            raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
        rounds += 1
        hubs = hub_degree if shape.max_degree >= hub_degree else None
        current = checkpoint(small_star(large_star(current, hubs), hubs), f"cc-round-{rounds:03d}")
        shape = star_shape(current)
        _log_round(rounds, shape)
    # A forest of stars: each leaf (src) points at its centre (dst), the component's minimum.
    centres = current.select(F.col("dst").alias(DOC_ID)).distinct()
    labels = current.select(F.col("src").alias(DOC_ID), F.col("dst").alias("root")).unionByName(
        centres.select(DOC_ID, F.col(DOC_ID).alias("root")))
    return Components(labels, rounds)


def _log_round(rounds: int, shape: StarShape) -> None:
    """One line per round (round 0: the input graph), from the aggregate the round runs anyway."""
    log.info("dedup components round %d: %s edges, largest degree %s, %s", rounds, f"{shape.edges:,}",
             f"{shape.max_degree:,}", "converged" if shape.converged else "not converged")
