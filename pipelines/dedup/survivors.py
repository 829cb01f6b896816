"""Stage 6: one survivor per cluster and the record of every removed document.

Survivor order (highest wins, ties to the smallest id): ``smallest-id`` ranks all documents
equal; ``longest`` ranks by character length; ``priority`` by the user's column. The key
``struct(rank, ~doc_id)`` makes "max" mean "best rank, then smallest id" (``~x = -x-1`` flips
the order of ids without overflow), so the choice is deterministic whatever the layout.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from schemas.tables import DOC_ID


def survivor_key(rank: Column | str = "rank") -> Column:
    return F.struct(F.col(rank) if isinstance(rank, str) else rank, F.bitwise_not(F.col(DOC_ID)),
                    F.col(DOC_ID).alias("id"))


def best_of(groups: DataFrame, group_columns: list[str], alias: str) -> DataFrame:
    """Per group, the id of its best member by :func:`survivor_key` (``groups`` has ``rank``)."""
    return groups.groupBy(*group_columns).agg(F.max(survivor_key()).getField("id").alias(alias))


def exact_groups(ranked: DataFrame) -> DataFrame:
    """``(doc_id, rep)`` for documents with non-empty text: ``rep`` is the best exact copy."""
    keys = ["exact_hash_hi", "exact_hash_lo"]
    reps = best_of(ranked, keys, "rep")
    return ranked.join(reps, keys).select(DOC_ID, "rep")


def cluster_survivors(labels: DataFrame, ranks: DataFrame) -> DataFrame:
    """``(doc_id, survivor)`` for every node of the component labels ``(doc_id, root)``."""
    ranked = labels.join(ranks, DOC_ID)
    best = best_of(ranked, ["root"], "survivor")
    return labels.join(best, "root").select(DOC_ID, "survivor")


def strongest_links(edges: DataFrame) -> DataFrame:
    """Per node, its most similar verified neighbour: ``(doc_id, linked_to, similarity)``."""
    both = edges.select(F.col("src").alias(DOC_ID), F.col("dst").alias("nbr"), "similarity").unionByName(
        edges.select(F.col("dst").alias(DOC_ID), F.col("src").alias("nbr"), "similarity"))
    best = both.groupBy(DOC_ID).agg(
        F.max(F.struct("similarity", F.bitwise_not("nbr"), F.col("nbr").alias("id"))).alias("best"))
    return best.select(DOC_ID, F.col("best.id").alias("linked_to"), F.col("best.similarity").alias("similarity"))
