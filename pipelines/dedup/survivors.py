"""Stage 6: one survivor per cluster and the record of every removed document.

Survivor order (highest wins, ties to the smallest id): ``smallest-id`` ranks all documents
equal; ``longest`` ranks by character length; ``priority`` by the user's column. The key
``struct(rank, ~doc_id)`` makes "max" mean "best rank, then smallest id" (``~x = -x-1`` flips
the order of ids without overflow), so the choice is deterministic whatever the layout.

Both joins back to the members go through ``hub_join``: a group of ``hub_degree`` or more
members (thousands of copies of one boilerplate text, a giant cluster) is broadcast rather than
shuffled into one task.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.dedup.skew import hub_join
from schemas.dedup import DOC_ID


def survivor_key(rank: Column | str = "rank") -> Column:
    return F.struct(F.col(rank) if isinstance(rank, str) else rank, F.bitwise_not(F.col(DOC_ID)),
                    F.col(DOC_ID).alias("id"))


def best_of(groups: DataFrame, group_columns: list[str], alias: str) -> DataFrame:
    """Per group, the id of its best member by :func:`survivor_key` (``groups`` has ``rank``),
    and the group's ``size``."""
    return groups.groupBy(*group_columns).agg(F.max(survivor_key()).getField("id").alias(alias),
                                              F.count(F.lit(1)).alias("size"))


def exact_groups(ranked: DataFrame, hub_degree: int) -> DataFrame:
    """``(doc_id, rep)`` for documents with non-empty text: ``rep`` is the best exact copy."""
    keys = ["exact_hash_hi", "exact_hash_lo"]
    reps = best_of(ranked, keys, "rep")
    return hub_join(ranked, reps, keys, "size", hub_degree).select(DOC_ID, "rep")


def cluster_survivors(labels: DataFrame, ranks: DataFrame | None, hub_degree: int) -> DataFrame:
    """``(doc_id, survivor)`` for every node of the component labels ``(doc_id, root)``.

    ``ranks`` is ``(doc_id, rank)``, or None when every document ranks the same: the survivor is
    then the smallest id, which is the component's root already.
    """
    if ranks is None:
        return labels.select(DOC_ID, F.col("root").alias("survivor"))
    ranked = labels.join(ranks, DOC_ID)
    best = best_of(ranked, ["root"], "survivor")
    return hub_join(labels, best, "root", "size", hub_degree).select(DOC_ID, "survivor")


def strongest_links(edges: DataFrame) -> DataFrame:
    """Per node, its most similar verified neighbour: ``(doc_id, linked_to, similarity)``."""
    both = edges.select(F.col("src").alias(DOC_ID), F.col("dst").alias("nbr"), "similarity").unionByName(
        edges.select(F.col("dst").alias(DOC_ID), F.col("src").alias("nbr"), "similarity"))
    best = both.groupBy(DOC_ID).agg(
        F.max(F.struct("similarity", F.bitwise_not("nbr"), F.col("nbr").alias("id"))).alias("best"))
    return best.select(DOC_ID, F.col("best.id").alias("linked_to"), F.col("best.similarity").alias("similarity"))


def cluster_sizes(duplicates: DataFrame, sample: int = 5) -> DataFrame:
    """``(cluster_id, size, sample_ids)`` per cluster of the ``DUPLICATES`` table.

    ``size`` counts the survivor too. ``sample_ids`` are the removed members minimising each of
    ``sample`` seeded hashes: deterministic, and computed by streaming aggregates, so no
    cluster's member list is ever built however large the cluster is.
    """
    picks = [F.min_by(DOC_ID, F.xxhash64(F.lit(k), F.col(DOC_ID))) for k in range(sample)]
    return duplicates.groupBy("cluster_id").agg((F.count(F.lit(1)) + 1).alias("size"),
                                                F.sort_array(F.array_distinct(F.array(*picks))).alias("sample_ids"))


def giant_clusters(sizes: DataFrame, min_size: int, listed: int = 20) -> list[dict]:
    """The (at most ``listed``) largest clusters of ``min_size`` or more documents, largest first."""
    rows = (sizes.filter(F.col("size") >= min_size).orderBy(F.desc("size"), "cluster_id")
            .limit(listed).collect())
    return [{"cluster_id": r["cluster_id"], "size": r["size"], "sample_ids": list(r["sample_ids"])} for r in rows]
