"""Stage 2: exact duplicates. Documents whose normalised texts hash equal form a group; only the
group's best member, its representative, goes on to LSH.

The group key is the 128-bit hash of the normalised text from the signature scan
(``exact_hash_hi``, ``exact_hash_lo``). The representative is chosen by the survivor order of
``survivors`` (so with ``--keep longest`` the longest raw text of the group represents it), and
every member is joined back to it through ``hub_join``: thousands of copies of one boilerplate
text are broadcast rather than shuffled into one task.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.dedup.skew import filter_ids, hub_join
from pipelines.dedup.survivors import best_of
from schemas.dedup import DOC_ID


def exact_groups(ranked: DataFrame, hub_degree: int) -> DataFrame:
    """``(doc_id, rep)`` for documents with non-empty text: ``rep`` is the best exact copy."""
    keys = ["exact_hash_hi", "exact_hash_lo"]
    reps = best_of(ranked, keys, "rep")
    return hub_join(ranked, reps, keys, "size", hub_degree).select(DOC_ID, "rep")


def exact_copies(groups: DataFrame) -> DataFrame:
    """``(doc_id, rep)`` of the members that are not their group's representative: the exact duplicates."""
    return groups.filter(F.col(DOC_ID) != F.col("rep"))


def lsh_input(texts: DataFrame, groups: DataFrame, broadcast_limit: int, n_documents: int,
              also_removed: DataFrame | None = None) -> DataFrame:
    """The rows of ``texts`` (of ``n_documents`` documents) that LSH compares: representatives with
    at least one shingle, less the ids in ``also_removed`` (under ``--against``: the exact copies
    of indexed documents, already out of ``groups``, so the removed ids are distinct documents)."""
    removed = exact_copies(groups).select(DOC_ID)
    if also_removed is not None:
        removed = removed.unionByName(also_removed.select(DOC_ID))
    return filter_ids(texts.filter(F.col("n_shingles") > 0), removed, broadcast_limit, keep=False,
                      at_most=n_documents)
