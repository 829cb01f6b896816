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
  the signature kernel itself (``udfs.minhash.shingle_sets``), decides. Only documents of
  such uncertain pairs are read again, each is shingled once, and no other text moves.

``--verify estimate`` keeps the estimate alone; ``--verify off`` keeps every candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.config import LshConfig, MinHashConfig, VerifyMode
from pipelines.dedup.skew import filter_ids
from schemas.dedup import DOC_ID, EXACT_SCORED_EDGES, SHINGLE_SETS, VERIFIED_EDGES
from udfs.arrow_buffers import rows_from_binary
from udfs.lsh import signature_agreement
from udfs.minhash import set_jaccard, shingle_sets


def score_edges(edges: DataFrame, signatures: DataFrame, num_perm: int) -> DataFrame:
    """``VERIFIED_EDGES`` with the signature-agreement similarity of every edge (no filter)."""
    sigs = signatures.select(DOC_ID, "signature")
    pairs = (edges.join(sigs.withColumnsRenamed({DOC_ID: "src", "signature": "src_sig"}), "src")
             .join(sigs.withColumnsRenamed({DOC_ID: "dst", "signature": "dst_sig"}), "dst")
             .select("src", "dst", "src_sig", "dst_sig"))
    names = [f.name for f in VERIFIED_EDGES.fields]

    def score(batches):
        for batch in batches:
            left = rows_from_binary(batch.column(2), np.uint32, num_perm)
            right = rows_from_binary(batch.column(3), np.uint32, num_perm)
            yield pa.RecordBatch.from_arrays(
                [batch.column(0), batch.column(1), pa.array(signature_agreement(left, right))],
                names=names)

    return pairs.mapInArrow(score, VERIFIED_EDGES)


def uncertain_range(cfg: LshConfig, num_perm: int) -> tuple[float, float]:
    """The estimates ``(low, high)`` between which a pair gets its exact Jaccard."""
    t = cfg.threshold
    margin = cfg.uncertain_within_se * math.sqrt(t * (1.0 - t) / num_perm)
    return t - margin, t + margin


def exact_scores(pairs: DataFrame, documents: DataFrame, text_column: str, cfg: MinHashConfig,
                 broadcast_limit: int) -> DataFrame:
    """``EXACT_SCORED_EDGES``: each ``(src, dst, similarity=estimate)`` with its exact Jaccard.

    Only the texts of documents in ``pairs`` are read (a semi-join on their ids), each is
    shingled once into its sorted set of shingle hashes, and each pair then costs one merge
    of two sorted arrays.
    """
    ids = (pairs.select(F.col("src").alias(DOC_ID)).unionByName(pairs.select(F.col("dst").alias(DOC_ID)))
           .distinct())
    texts = filter_ids(documents.select(DOC_ID, F.col(f"`{text_column}`")), ids, broadcast_limit, keep=True)
    ngram, char_ngrams = cfg.ngram, cfg.char_ngrams

    def to_sets(batches):
        for batch in batches:
            yield pa.RecordBatch.from_arrays(
                [batch.column(0), shingle_sets(batch.column(1), ngram=ngram, char_ngrams=char_ngrams)],
                names=SHINGLE_SETS.fieldNames())

    # Hash joins, not sort-merge: sorting rows that carry whole sets costs twice the join.
    sets = texts.mapInArrow(to_sets, SHINGLE_SETS).hint("shuffle_hash")
    joined = (pairs.join(sets.withColumnsRenamed({DOC_ID: "src", "shingles": "src_set"}), "src")
              .join(sets.withColumnsRenamed({DOC_ID: "dst", "shingles": "dst_set"}), "dst")
              .select("src", "dst", "similarity", "src_set", "dst_set"))
    names = EXACT_SCORED_EDGES.fieldNames()

    def score(batches):
        for batch in batches:
            exact = set_jaccard(batch.column(3), batch.column(4))
            yield pa.RecordBatch.from_arrays([batch.column(0), batch.column(1), pa.array(exact), batch.column(2)],
                                             names=names)

    return joined.mapInArrow(score, EXACT_SCORED_EDGES)


@dataclass
class Verification:
    """The edges that count, and the exactly scored pairs behind the decision (None unless exact)."""

    edges: DataFrame  # VERIFIED_EDGES; similarity is the exact Jaccard where it was computed
    exact: DataFrame | None


def verify_edges(scored: DataFrame, documents: DataFrame, text_column: str, lsh: LshConfig,
                 minhash: MinHashConfig, broadcast_limit: int,
                 checkpoint: Callable[[DataFrame, str], DataFrame]) -> Verification:
    """Apply ``lsh.verify`` to the scored candidates (see the module docstring)."""
    t = F.lit(lsh.threshold)
    if lsh.verify is VerifyMode.OFF:
        return Verification(scored, None)
    if lsh.verify is VerifyMode.ESTIMATE:
        return Verification(scored.filter(F.col("similarity") >= t), None)
    low, high = uncertain_range(lsh, minhash.num_perm)
    similarity = F.col("similarity")
    uncertain = scored.filter((similarity > low) & (similarity < high))
    exact = checkpoint(exact_scores(uncertain, documents, text_column, minhash, broadcast_limit), "exact-scores")
    edges = scored.filter(similarity >= high).unionByName(
        exact.filter(similarity >= t).select(*VERIFIED_EDGES.fieldNames()))
    return Verification(edges, exact)


def verification_counts(scored: DataFrame, verification: Verification, threshold: float) -> dict:
    """The edge figures of ``stats.json``: candidates, those whose estimate reaches the threshold,
    verified edges, and how exact Jaccard decided the uncertain pairs (None unless it ran),
    with where it overruled the estimate."""
    reaches = F.col("similarity") >= threshold  # the estimate; in ``verification.exact``, exact Jaccard
    counts = scored.agg(F.count(F.lit(1)).alias("candidates"), F.count_if(reaches).alias("passed")).first()
    verified = verification.edges.count()
    exact = None
    if verification.exact is not None:
        estimate_reaches = F.col("estimate") >= threshold
        exact = verification.exact.agg(
            F.count(F.lit(1)).alias("checked"), F.count_if(reaches).alias("passed"),
            F.count_if(estimate_reaches & ~reaches).alias("estimate_passed_exact_failed"),
            F.count_if(~estimate_reaches & reaches).alias("estimate_failed_exact_passed")).first().asDict()
    return {"candidate_edges": counts["candidates"], "verified_edges": verified,
            "estimate_passed": counts["passed"], "exact_verification": exact}
