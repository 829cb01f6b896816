"""Stage 4: decide which candidate pairs are duplicates — by exact Jaccard where it matters.

A band collision only says two documents agree on ``r`` of ``num_perm`` signature positions;
unrelated documents collide by chance, and one false edge can chain two whole clusters
together. Each candidate is therefore scored on all ``num_perm`` positions: the fraction of
agreeing positions estimates the Jaccard similarity ``J`` with standard error
``se = sqrt(J(1-J)/num_perm)`` (0.029 at J = 0.7 with 256 permutations).

An estimate is not good enough near the threshold. A real corpus holds thousands of pairs
just below it (successive versions of a file); a few percent of them pass on the estimate by
chance, and each such edge merges two distinct clusters and deletes one of them. Under
``--verify exact`` (the default) the estimate decides only where it is far from the
threshold ``t``:

* estimate ``>= t + k·se``: an edge (a pair of true ``J < t`` gets there with chance below
  the one-sided normal tail at ``k`` standard errors, 3e-5 at the default ``k = 4``);
* estimate ``<= t - k·se``: no edge;
* in between: the **exact** Jaccard of the two shingle sets, recomputed from the texts by
  the signature kernel itself (``udfs.minhash.shingle_sets``), decides.

What exact verification costs is moving documents, not comparing sets. A document is in
several uncertain pairs (the versions of one file pair up with each other), so bringing both
sets to each pair copies a set once per pair it is in: on the 1.1 GB real corpus, 2.3 GB of
sets for 0.52 GB of distinct text, a third of it from the 1 % of pairs between multi-megabyte
generated files. Instead each pair gets a *home*, the pairs of a connected component of the
uncertain pairs sharing one (:func:`pair_homes`), and each text is sent once to each home
that needs it: within a component, once. One pass per shuffle partition then holds its
homes' texts, shingles each once and scores every pair by a merge of two sorted sets. The
candidates' signatures reach their scoring the same way (:func:`at_homes`).

``--verify estimate`` keeps the estimate alone; ``--verify off`` keeps every candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.arrow_tasks import map_in_arrow
from pipelines.config import LshConfig, MinHashConfig, VerifyMode
from pipelines.dedup.checkpoints import Checkpoints
from schemas.dedup import DOC_ID, EXACT_SCORED_EDGES, VERIFIED_EDGES
from udfs.arrow_buffers import rows_from_binary
from udfs.graph import node_components
from udfs.lsh import signature_agreement
from udfs.minhash import ShingleSetTable, pair_jaccard
from udfs.pairs import distinct_pairs, pair_rows

# Makes a table built on the driver a data frame: ``Checkpoints.driver_table``.
DriverTable = Callable[[pa.Table, str], DataFrame]
# What a home task keeps of its items' column, batch by batch: ``add(column)``.
Holder = TypeVar("Holder")


def score_edges(edges: DataFrame, signatures: DataFrame, num_perm: int, broadcast_limit: int,
                max_home_docs: int, driver_table: DriverTable) -> DataFrame:
    """``VERIFIED_EDGES`` with the signature-agreement similarity of every edge (no filter).

    Signatures travel to the pairs' homes (:func:`at_homes`) as texts do for exact scores: a
    document's signature once to each home that needs it, rather than once to every pair it is in
    (on the 1 GB real slice 4.9 times per document: 239 MB to Python, where homes send 49 MB).
    """
    names = VERIFIED_EDGES.fieldNames()

    def score(doc_ids: np.ndarray, signatures: _Signatures, pairs: pa.Table) -> pa.RecordBatch:
        src, dst = pairs.column("src").to_numpy(), pairs.column("dst").to_numpy()
        similarity = signature_agreement(signatures.rows(), *pair_rows(doc_ids, src, dst))
        return pa.RecordBatch.from_arrays([pa.array(src), pa.array(dst), pa.array(similarity)], names=names)

    homes = at_homes(edges.select("src", "dst"), signatures.select(DOC_ID, "signature"), broadcast_limit,
                     max_home_docs, driver_table, "scored-homes")
    return map_in_arrow(homes, _home_task(lambda: _Signatures(num_perm), "signature", score), VERIFIED_EDGES)


class _Signatures:
    """A task's signatures, batch by batch (:meth:`add`), as one matrix (:meth:`rows`)."""

    def __init__(self, num_perm: int) -> None:
        self.num_perm, self._parts = num_perm, [np.zeros((0, num_perm), dtype=np.uint32)]

    def add(self, column: pa.Array) -> None:
        self._parts.append(rows_from_binary(column, np.uint32, self.num_perm))

    def rows(self) -> np.ndarray:
        return np.concatenate(self._parts)


def uncertain_range(cfg: LshConfig, num_perm: int) -> tuple[float, float]:
    """The estimates ``(low, high)`` between which a pair gets its exact Jaccard."""
    t = cfg.threshold
    margin = cfg.uncertain_within_se * math.sqrt(t * (1.0 - t) / num_perm)
    return t - margin, t + margin


def pair_homes(src: np.ndarray, dst: np.ndarray, max_pairs: int) -> np.ndarray:
    """A home for each pair ``(src[p], dst[p])``: the connected components of the pairs, a
    component of more than ``max_pairs`` pairs cut into runs of ``max_pairs`` (ordered by ``src``).

    A document's text is needed at the homes of its pairs, so within a component every text
    travels once; a home holds at most ``2 * max_pairs`` documents however large its component.
    Homes are numbered by the position of their first pair in (component, ``src``) order.
    """
    n_pairs = len(src)
    _, index, node_component = node_components(src, dst)
    component = node_component[index[:n_pairs]]
    order = np.lexsort((src, component))
    first = np.flatnonzero(np.diff(component[order], prepend=-1))  # where each component starts in ``order``
    start = np.repeat(first, np.diff(np.append(first, n_pairs)))
    homes = np.empty(n_pairs, dtype=np.int64)
    homes[order] = start + (np.arange(n_pairs) - start) // max_pairs * max_pairs
    return homes


def _homes_on_driver(pairs: pa.Table, max_pairs: int, driver_table: DriverTable,
                     name: str) -> tuple[DataFrame, DataFrame]:
    """``(pairs with home, needs)`` from :func:`pair_homes`; ``needs`` is every distinct
    ``(doc_id, home)`` a pair asks for."""
    src, dst = pairs.column("src").to_numpy(), pairs.column("dst").to_numpy()
    homes = pair_homes(src, dst, max_pairs)
    docs, doc_homes = distinct_pairs(np.concatenate([src, dst]), np.tile(homes, 2))
    return (driver_table(pairs.append_column("home", pa.array(homes)), f"{name}-pairs"),
            driver_table(pa.table({DOC_ID: docs, "home": doc_homes}), f"{name}-needs"))


def at_homes(pairs: DataFrame, items: DataFrame, broadcast_limit: int, max_home_docs: int,
             driver_table: DriverTable, name: str) -> DataFrame:
    """The ``pairs`` (``src``, ``dst``, …) and the ``items`` (``DOC_ID``, …: a text, a signature)
    they name, in shuffle partitions by home: each pair's home holds the items of both its ends.

    Up to ``broadcast_limit / 2`` pairs are collected and homed on the driver by connected
    component (:func:`pair_homes`, at most ``max_home_docs`` documents a home), their needs
    broadcast to the items: an item travels once to each home that needs it, within a component
    once. Beyond it a pair's home is a hash of the pair into the shuffle partitions and the needs
    are joined to the items in a shuffle: each home then gets about ``pairs / partitions`` pairs.
    A row is an item where ``DOC_ID`` is set, a pair where it is null. ``driver_table(table,
    name)`` makes the driver's tables data frames (``Checkpoints.driver_table``).
    """
    collected = pairs.limit(broadcast_limit // 2 + 1).toArrow()
    if 2 * collected.num_rows <= broadcast_limit:
        homed, needs = _homes_on_driver(collected, max(1, max_home_docs // 2), driver_table, name)
        needs = F.broadcast(needs)
    else:
        parts = int(pairs.sparkSession.conf.get("spark.sql.shuffle.partitions"))
        homed = pairs.withColumn("home", F.pmod(F.xxhash64("src", "dst"), F.lit(parts)))
        needs = (homed.select(F.col("src").alias(DOC_ID), "home")
                 .unionByName(homed.select(F.col("dst").alias(DOC_ID), "home")).distinct())
    sent = items.join(needs, DOC_ID)
    # No partition count: AQE packs the homes' shuffle partitions into tasks of its advisory size.
    return sent.unionByName(homed, allowMissingColumns=True).repartition("home")


def _home_task(new_holder: Callable[[], Holder], column: str, score: Callable[[np.ndarray, Holder, pa.Table],
                                                                          pa.RecordBatch]):
    """The task over a partition of :func:`at_homes`: the ``column`` of each batch of items goes
    to a holder (``new_holder().add(column)``: it keeps what it makes of them, shingle sets, not
    the texts), then ``score(doc_ids, holder, pairs)`` gets the pairs whose two ends arrived.

    A pair whose end did not arrive (an indexed document missing from its run's ``data/``) gets
    no score; the caller counts such pairs where they matter (``against.check_texts``).
    """
    def task(batches):
        holder, ids, pair_batches = new_holder(), [], []
        for batch in batches:
            is_item = batch.column(DOC_ID).is_valid()
            ids.append(batch.column(DOC_ID).filter(is_item).to_numpy())
            holder.add(batch.column(column).filter(is_item))
            pair_batches.append(batch.filter(pc.invert(is_item)))
        if not pair_batches:
            return
        table, doc_ids = pa.Table.from_batches(pair_batches), np.concatenate(ids)
        known = pa.array(doc_ids)
        yield score(doc_ids, holder, table.filter(pc.and_(pc.is_in(table.column("src"), known),
                                                         pc.is_in(table.column("dst"), known))))

    return task


def exact_scores(pairs: DataFrame, documents: DataFrame, text_column: str, cfg: MinHashConfig,
                 broadcast_limit: int, max_home_docs: int, driver_table: DriverTable) -> DataFrame:
    """``EXACT_SCORED_EDGES``: each ``(src, dst, similarity=estimate)`` with its exact Jaccard.

    The texts go to the pairs' homes (:func:`at_homes`); a task there shingles each text as it
    arrives (a task holds its partition's sets, not its texts) and merges the sorted sets of
    every pair (:func:`udfs.minhash.pair_jaccard`).
    """
    ngram, char_ngrams = cfg.ngram, cfg.char_ngrams
    names = EXACT_SCORED_EDGES.fieldNames()

    def score(doc_ids: np.ndarray, sets: ShingleSetTable, pairs: pa.Table) -> pa.RecordBatch:
        src, dst = pairs.column("src").to_numpy(), pairs.column("dst").to_numpy()
        exact = pair_jaccard(doc_ids, sets.sets(), src, dst)
        return pa.RecordBatch.from_arrays([pa.array(src), pa.array(dst), pa.array(exact),
                                           pairs.column("similarity").combine_chunks()], names=names)

    texts = documents.select(DOC_ID, F.col(f"`{text_column}`").alias("text"))
    homes = at_homes(pairs.select("src", "dst", "similarity"), texts, broadcast_limit, max_home_docs, driver_table,
                     "exact-homes")
    return map_in_arrow(homes, _home_task(lambda: ShingleSetTable(ngram=ngram, char_ngrams=char_ngrams), "text", score),
                        EXACT_SCORED_EDGES)


@dataclass
class Verification:
    """The edges that count and the exactly scored pairs behind some of them (None unless exact):
    the scored candidates accepted on their estimate (:func:`accepted_on_estimate`), plus the
    exactly scored pairs that reach the threshold."""

    edges: DataFrame  # VERIFIED_EDGES; similarity is the exact Jaccard where it was computed
    exact: DataFrame | None


def accepted_on_estimate(lsh: LshConfig, num_perm: int) -> Column:
    """The scored candidates that are edges on their estimate alone, under ``lsh.verify``."""
    similarity = F.col("similarity")
    if lsh.verify is VerifyMode.OFF:
        return F.lit(True)
    if lsh.verify is VerifyMode.ESTIMATE:
        return similarity >= F.lit(lsh.threshold)
    return similarity >= F.lit(uncertain_range(lsh, num_perm)[1])


def verify_edges(scored: DataFrame, documents: DataFrame, text_column: str, lsh: LshConfig,
                 minhash: MinHashConfig, broadcast_limit: int, max_home_docs: int,
                 checkpoint: Checkpoints) -> Verification:
    """Apply ``lsh.verify`` to the scored candidates (see the module docstring); ``checkpoint(df,
    name, counts)`` persists the exact scores, observing :func:`exact_counts` on them."""
    similarity = F.col("similarity")
    edges = scored.filter(accepted_on_estimate(lsh, minhash.num_perm))
    if lsh.verify is not VerifyMode.EXACT:
        return Verification(edges, None)
    low, high = uncertain_range(lsh, minhash.num_perm)
    uncertain = scored.filter((similarity > low) & (similarity < high))
    exact = checkpoint(exact_scores(uncertain, documents, text_column, minhash, broadcast_limit, max_home_docs,
                                    checkpoint.driver_table), "exact-scores", exact_counts(lsh.threshold))
    passed = exact.filter(similarity >= F.lit(lsh.threshold)).select(*VERIFIED_EDGES.fieldNames())
    return Verification(edges.unionByName(passed), exact)


def scored_counts(lsh: LshConfig, num_perm: int) -> dict[str, Column]:
    """What ``stats.json`` counts of the scored candidates: all, those whose estimate reaches the
    threshold, and those accepted on it. Observed as they are checkpointed."""
    return {"candidates": F.count(F.lit(1)), "passed": F.count_if(F.col("similarity") >= lsh.threshold),
            "accepted": F.count_if(accepted_on_estimate(lsh, num_perm))}


def exact_counts(threshold: float) -> dict[str, Column]:
    """What ``stats.json`` counts of the exactly scored pairs: all, those passing on exact Jaccard,
    and where exact Jaccard overruled the estimate. Observed as they are checkpointed."""
    reaches, estimate_reaches = F.col("similarity") >= threshold, F.col("estimate") >= threshold
    return {"checked": F.count(F.lit(1)), "passed": F.count_if(reaches),
            "estimate_passed_exact_failed": F.count_if(estimate_reaches & ~reaches),
            "estimate_failed_exact_passed": F.count_if(~estimate_reaches & reaches)}


def verification_counts(scored: dict[str, int], exact: dict[str, int] | None) -> dict:
    """The edge figures of ``stats.json`` from :func:`scored_counts` and :func:`exact_counts`
    (None unless exact verification ran): the verified edges are the accepted candidates plus
    the exact scores that pass."""
    verified = scored["accepted"] + (exact["passed"] if exact is not None else 0)
    return {"candidate_edges": scored["candidates"], "verified_edges": verified,
            "estimate_passed": scored["passed"], "exact_verification": exact}
