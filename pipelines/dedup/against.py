"""Deduplicating a new batch against the indexes of earlier runs (``--against``).

The result is defined by one run over both: with ``A`` the indexed documents and ``B`` the
new batch, ``dedup(B --against A)`` keeps exactly the ``B`` documents that ``dedup(A ∪ B)``
keeps when every ``A`` document ranks above every ``B`` document (``--keep-priority`` on a
batch column; within a batch the usual order). In that joint run a ``B`` document is removed
iff its cluster holds an ``A`` document or a better ``B`` one. Its cluster is its component
over verified edges, and a path from a ``B`` document to the first ``A`` document it meets
uses only ``B–B`` and ``B–A`` edges, so the ``A–A`` edges — and rereading ``A`` — are not
needed. Each stage produces exactly the joint run's ``B–B`` and ``B–A`` part:

* **exact copies**: a ``B`` document whose exact hash is an indexed document's is removed
  (``match = "index"``) and leaves LSH, as it would leave it behind the ``A`` representative
  of its joint exact-copy group. The index keeps the hash of every document, copies included,
  so copies of removed and of shingle-less documents are caught too;
* **candidates**: each LSH bucket of the batch is completed with its indexed members (the
  index's band keys, ``udfs.lsh.bucket_pairs_against``). A bucket's pairs depend on its
  members alone, so the ``B`` pairs are the joint run's, buckets above ``--all-pairs-bucket``
  included (there both runs draw the same random neighbours);
* **verification**: the same scores on the same signatures (the index's, for the candidates
  only) and the same exact Jaccard for uncertain pairs. Their indexed texts come from the
  run's ``data/`` (kept) or the index's ``texts/`` (removed), read for the runs those pairs
  involve only;
* **survivors**: a component holding indexed documents sends its new members to the smallest
  survivor among them (``match = "index"``); other components choose among their members
  as a single run does. Indexed documents are never removed and never rewritten.

This holds when the earlier runs used the same keep order among their own documents as the
joint run (then the indexed LSH documents are the joint run's exact-copy representatives).
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from pipelines.config import DedupConfig, VerifyMode
from pipelines.dedup.index import IndexedRun
from pipelines.dedup.lsh import band_blocks
from pipelines.dedup.skew import filter_ids
from pipelines.dedup.survivors import cluster_survivors
from pipelines.dedup.verify import uncertain_range
from pipelines.errors import InputError
from pipelines.io.hadoop import HadoopFs
from schemas.enforce import conform
from schemas.dedup import DOC_ID, DUPLICATES, INDEX_DOCS, INDEX_TEXTS

INDEX_MATCH = "index"
_HASH = ["exact_hash_hi", "exact_hash_lo"]


def _union(frames: list[DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, frames)


def _ends(pairs: DataFrame) -> DataFrame:
    """``(doc_id)`` of both ends of ``(src, dst)`` pairs (with repeats)."""
    return pairs.select(F.col("src").alias(DOC_ID)).unionByName(pairs.select(F.col("dst").alias(DOC_ID)))


class Against:
    """The indexed runs as the stages of a new run see them (each method is one stage's hook)."""

    def __init__(self, spark: SparkSession, runs: list[IndexedRun], cfg: DedupConfig) -> None:
        self.spark, self.runs, self.cfg = spark, runs, cfg
        self.texts_needed: dict[tuple[int, bool], int] = {}  # (run, kept): texts exact verification needed
        # INDEX_DOCS of every run, with the run's position in ``runs``
        self.docs = _union([spark.read.schema(INDEX_DOCS).parquet(f"{run.segment}/docs").withColumn("run", F.lit(k))
                            for k, run in enumerate(runs)])

    @property
    def indexed_documents(self) -> int:
        """Documents of all indexed runs, as their manifests count them."""
        return sum(run.documents for run in self.runs)

    def ids(self) -> DataFrame:
        return self.docs.select(DOC_ID)

    def check_ids(self, sigs: DataFrame) -> None:
        """Refuse new documents that reuse an indexed id for another text (ids must be unique across
        batches); the same id with the same text is a document seen before, an exact copy."""
        indexed = self.docs.select(DOC_ID, *[F.col(c).alias(f"indexed_{c}") for c in _HASH])
        clash = (sigs.select(DOC_ID, *_HASH).join(indexed, DOC_ID)
                 .filter(reduce(lambda a, b: a | b, [F.col(c) != F.col(f"indexed_{c}") for c in _HASH]))
                 .select(DOC_ID).limit(5).collect())
        if clash:
            raise InputError(f"documents of --input reuse ids of indexed documents with another text, e.g. "
                             f"{[r[DOC_ID] for r in clash]}; ids must be unique across batches (--id-column)")

    def exact_matches(self, hashes: DataFrame) -> DataFrame:
        """``DUPLICATES`` rows for the new documents (``hashes``: ``doc_id`` and exact hash) that an
        indexed document copies exactly: linked to it, in its survivor's cluster.

        The index side is reduced to one row per hash first, so a hash that thousands of indexed
        documents share joins once.
        """
        indexed = (self.docs.groupBy(*_HASH)
                   .agg(F.min(F.struct("survivor", F.col(DOC_ID).alias("linked_to"))).alias("m")))
        matched = hashes.join(indexed, _HASH).select(
            DOC_ID, F.col("m.survivor").alias("cluster_id"), F.col("m.linked_to").alias("linked_to"),
            F.lit(1.0).alias("similarity"), F.lit(INDEX_MATCH).alias("match"))
        return conform(matched, DUPLICATES, "index exact matches")

    def band_blocks(self, parts: int) -> DataFrame:
        """``BAND_KEY_BLOCKS`` of the indexed LSH documents (``lsh.candidate_edges(..., indexed=)``)."""
        return band_blocks(self.docs.filter(F.col("band_keys").isNotNull()).select(DOC_ID, "band_keys"), parts)

    def signatures(self, lsh_input: DataFrame, candidates: DataFrame) -> DataFrame:
        """``(doc_id, signature)`` of the new LSH documents and of the indexed candidates only.

        Not all new documents: one that repeats an indexed document (same id, same text, e.g. a row
        crawled again) is an exact match, and its id must stand for the indexed document alone.
        """
        indexed = filter_ids(self.docs.filter(F.col("signature").isNotNull()).select(DOC_ID, "signature"),
                             _ends(candidates).distinct(), self.cfg.broadcast_removed_ids, keep=True)
        return lsh_input.select(DOC_ID, "signature").unionByName(indexed)

    def documents(self, documents: DataFrame, text_column: str, scored: DataFrame,
                  matched: DataFrame) -> DataFrame:
        """``(doc_id, text_column)`` of the new documents but the exact ``matched`` ones (see
        :meth:`signatures`), and of the indexed ones exact verification may need: only under
        ``--verify exact``, and only from the runs (and, per run, the kept or removed side) that an
        uncertain pair of ``scored`` reaches."""
        own = filter_ids(documents.select(DOC_ID, F.col(f"`{text_column}`")), matched.select(DOC_ID),
                         self.cfg.broadcast_removed_ids, keep=False)
        if self.cfg.lsh.verify is not VerifyMode.EXACT:
            return own
        needed = (self.docs.join(_ends(self._uncertain(scored)), DOC_ID, "left_semi")
                  .groupBy("run", (F.col("survivor") == F.col(DOC_ID)).alias("kept")).count().collect())
        self.texts_needed = {(row["run"], row["kept"]): row["count"] for row in needed}
        sources = [self._texts(self.runs[run], kept) for run, kept in sorted(self.texts_needed)]
        return _union([own, *[s.withColumnRenamed("text", text_column) for s in sources]])

    def _uncertain(self, scored: DataFrame) -> DataFrame:
        low, high = uncertain_range(self.cfg.lsh, self.cfg.minhash.num_perm)
        return scored.filter((F.col("similarity") > low) & (F.col("similarity") < high))

    def check_texts(self, scored: DataFrame, exact_scored: int | None) -> None:
        """Refuse to go on when uncertain pairs went without their exact Jaccard (``exact_scored`` of
        them got one): an indexed text was not found, and its pairs would silently be no edges."""
        if self.cfg.lsh.verify is not VerifyMode.EXACT:
            return
        lost = self._uncertain(scored).count() - exact_scored
        if lost:
            raise InputError(f"{lost} uncertain pairs need texts of indexed documents that were not found in the "
                             f"indexed runs' data/ ({', '.join(run.data for run in self.runs)}) or the index's "
                             "texts/: were they moved, deleted or rewritten?")

    def _texts(self, run: IndexedRun, kept: bool) -> DataFrame:
        """``(doc_id, text)``: a run's kept texts from its ``data/``, its removed LSH documents' from the index."""
        if not kept:
            return self.spark.read.schema(INDEX_TEXTS).parquet(f"{run.segment}/texts")
        if not HadoopFs(self.spark).exists(run.data):
            raise InputError(f"exact verification needs kept texts of the indexed run {run.output!r}, but its "
                             f"data {run.data!r} is gone (moved or deleted?)")
        schema = StructType([StructField(DOC_ID, LongType()), StructField(run.text_column, StringType())])
        data = self.spark.read.schema(schema).parquet(run.data)
        return data.select(DOC_ID, F.col(f"`{run.text_column}`").alias("text"))

    def survivors(self, labels: DataFrame, ranks: DataFrame | None, hub_degree: int) -> DataFrame:
        """``(doc_id, survivor, match)`` for the new documents among component ``labels`` ``(doc_id, root)``.

        A component with indexed members: every new member goes to the smallest survivor of those
        members (``index``). Any other component: ``survivors.cluster_survivors`` (``near``).
        """
        indexed = labels.join(self.docs.select(DOC_ID, F.col("survivor").alias("indexed_survivor")), DOC_ID)
        reached = indexed.groupBy("root").agg(F.min("indexed_survivor").alias("index_survivor"))
        new = labels.join(indexed.select(DOC_ID), DOC_ID, "left_anti").join(reached, "root", "left")
        to_index = new.filter(F.col("index_survivor").isNotNull()).select(
            DOC_ID, F.col("index_survivor").alias("survivor"), F.lit(INDEX_MATCH).alias("match"))
        own = cluster_survivors(new.filter(F.col("index_survivor").isNull()).select(DOC_ID, "root"), ranks, hub_degree)
        return to_index.unionByName(own.withColumn("match", F.lit("near")))

    def stats(self, duplicates: DataFrame, exact_matches: int) -> dict:
        """What ``stats.json: index`` records: the runs matched against; per run the new documents now
        in the cluster of one of its survivors, and how many of its texts exact verification needed
        (kept ones read from its ``data/``, removed ones from the index)."""
        per_run = dict(duplicates.join(self.docs.select(F.col(DOC_ID).alias("cluster_id"), "run"), "cluster_id")
                       .groupBy("run").count().collect())
        return {"against": list(self.cfg.index.against), "exact_matches": exact_matches,
                "indexed_documents": self.indexed_documents,
                "runs": [{"output": run.output, "id": run.id, "documents": run.documents, "matched": per_run.get(k, 0),
                          "texts_needed": {"kept": self.texts_needed.get((k, True), 0),
                                         "removed": self.texts_needed.get((k, False), 0)}}
                         for k, run in enumerate(self.runs)]}
