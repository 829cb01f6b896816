"""Stage 6: one survivor per cluster and the record of every removed document.

Survivor order (highest wins, ties to the smallest id): ``smallest-id`` ranks all documents
equal; ``longest`` ranks by character length; ``priority`` by the user's column. The key
``struct(rank, ~doc_id)`` makes "max" mean "best rank, then smallest id" (``~x = -x-1`` flips
the order of ids without overflow), so the choice is deterministic whatever the layout. Exact
grouping (``exact``) picks each group's representative by the same order.

The join back to the cluster members goes through ``hub_join``: a cluster of ``hub_degree`` or
more members is broadcast rather than shuffled into one task.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.config import KeepPolicy
from pipelines.dedup.skew import hub_join
from pipelines.spark_session import concurrently
from schemas.dedup import DOC_ID, DUPLICATES
from schemas.enforce import conform


def survivor_ranks(keep: KeepPolicy, priority_column: str | None, sigs: DataFrame,
                   documents: DataFrame) -> DataFrame | None:
    """``(doc_id, rank)`` for ``keep``: raw text length (``longest``, from the ``SIGNATURES`` rows
    ``sigs``) or the priority column of ``documents``; None when every document ranks the same."""
    if keep is KeepPolicy.LONGEST:
        return sigs.select(DOC_ID, F.col("text_length").alias("rank"))
    if keep is KeepPolicy.PRIORITY:
        return documents.select(DOC_ID, F.col(f"`{priority_column}`").alias("rank"))
    return None


def ranked_hashes(texts: DataFrame, ranks: DataFrame | None, keep: KeepPolicy) -> DataFrame:
    """``(doc_id, exact_hash_hi, exact_hash_lo, rank)`` of ``SIGNATURES`` rows, for exact grouping.

    ``longest`` reads the rank off the rows themselves and equal ranks need none: only
    ``priority`` joins ``ranks``, and the join carries no signatures.
    """
    if keep is KeepPolicy.LONGEST:
        return texts.select(DOC_ID, "exact_hash_hi", "exact_hash_lo", F.col("text_length").alias("rank"))
    hashes = texts.select(DOC_ID, "exact_hash_hi", "exact_hash_lo")
    return hashes.join(ranks, DOC_ID) if ranks is not None else hashes.withColumn("rank", F.lit(0))


def survivor_key(rank: Column | str = "rank") -> Column:
    return F.struct(F.col(rank) if isinstance(rank, str) else rank, F.bitwise_not(F.col(DOC_ID)),
                    F.col(DOC_ID).alias("id"))


def best_of(groups: DataFrame, group_columns: list[str], alias: str) -> DataFrame:
    """Per group, the id of its best member by :func:`survivor_key` (``groups`` has ``rank``),
    and the group's ``size``."""
    return groups.groupBy(*group_columns).agg(F.max(survivor_key()).getField("id").alias(alias),
                                              F.count(F.lit(1)).alias("size"))


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


def duplicates_table(survivors: DataFrame, exact_copies: DataFrame, edges: DataFrame,
                     index_matches: DataFrame | None = None) -> DataFrame:
    """The ``DUPLICATES`` rows: every non-survivor of a cluster, linked by its strongest verified edge
    (``near``, or ``index`` where ``survivors`` names that match), and every exact copy
    ``(doc_id, rep)``, linked to its representative (``exact``); under ``--against`` also
    ``index_matches``, the exact copies of indexed documents (``DUPLICATES`` rows already).

    An exact copy belongs to the cluster of its representative, whose survivor may be another
    document; a representative in no cluster is its own survivor.
    """
    match = F.col("match") if "match" in survivors.columns else F.lit("near")
    near = (survivors.filter(F.col(DOC_ID) != F.col("survivor"))
            .join(strongest_links(edges), DOC_ID)
            .select(DOC_ID, F.col("survivor").alias("cluster_id"), "linked_to", "similarity",
                    match.alias("match")))
    exact = (exact_copies.join(survivors.select(F.col(DOC_ID).alias("rep"), "survivor"), "rep", "left")
             .select(DOC_ID, F.coalesce("survivor", "rep").alias("cluster_id"),
                     F.col("rep").alias("linked_to"), F.lit(1.0).alias("similarity"),
                     F.lit("exact").alias("match")))
    removed = near.unionByName(exact)
    if index_matches is not None:
        removed = removed.unionByName(index_matches)
    return conform(removed, DUPLICATES, "duplicates")


def cluster_sizes(duplicates: DataFrame, *aggregates: Column) -> DataFrame:
    """``(cluster_id, size, *aggregates)`` per cluster of the ``DUPLICATES`` table; ``size`` counts
    the survivor too, ``aggregates`` are further aggregates over each cluster's rows."""
    return duplicates.groupBy("cluster_id").agg((F.count(F.lit(1)) + 1).alias("size"), *aggregates)


def sample_ids(sample: int = 5) -> Column:
    """The removed members of a cluster minimising each of ``sample`` seeded hashes: deterministic,
    and a streaming aggregate, so no cluster's member list is ever built however large it is."""
    picks = [F.min_by(DOC_ID, F.xxhash64(F.lit(k), F.col(DOC_ID))) for k in range(sample)]
    return F.sort_array(F.array_distinct(F.array(*picks))).alias("sample_ids")


# The largest clusters a summary keeps: stats.json lists the giants among them (``giant_clusters``),
# the run report shows the first few with their members.
LISTED_CLUSTERS = 20


@dataclass(frozen=True)
class ClusterSummary:
    """What ``stats.json`` and the run report say of the clusters, from two small queries.

    ``histogram``: ``(size, clusters of that size)``, ascending (a few hundred rows at most:
    sizes are counts); ``largest``: the largest clusters (ties: smallest ``cluster_id``), each
    ``{"cluster_id", "size", "sample_ids"}``. Counts, the largest size and the giants all follow
    from these two, so neither the check nor the report aggregates the clusters again.
    """

    histogram: list[tuple[int, int]]
    largest: list[dict]

    def counts(self, giant_size: int) -> dict:
        """The cluster figures of ``stats.json``: how many clusters, the largest, and how many
        have ``giant_size`` or more documents, the largest of those listed."""
        giants = [c for c in self.largest if c["size"] >= giant_size]
        return {"clusters": sum(n for _, n in self.histogram),
                "largest_cluster": max((size for size, _ in self.histogram), default=0),
                "giant_cluster_count": sum(n for size, n in self.histogram if size >= giant_size),
                "giant_clusters": giants}


def cluster_summary(duplicates: DataFrame, largest: int = LISTED_CLUSTERS) -> ClusterSummary:
    """The :class:`ClusterSummary` of a ``DUPLICATES`` table, with its ``largest`` largest clusters."""
    sizes = cluster_sizes(duplicates, sample_ids())
    counted, top = concurrently(duplicates.sparkSession, lambda: sizes.groupBy("size").count().collect(),
                                lambda: sizes.orderBy(F.desc("size"), "cluster_id").limit(largest).collect())
    histogram = sorted((r["size"], r["count"]) for r in counted)
    return ClusterSummary(histogram, [{"cluster_id": r["cluster_id"], "size": r["size"],
                                       "sample_ids": list(r["sample_ids"])} for r in top])
