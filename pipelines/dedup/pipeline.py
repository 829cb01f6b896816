"""The dedup job: read → ids → signatures → exact groups → LSH → verify → components → publish.

Accounting: every readable input document ends in exactly one of ``data/`` (kept) or
``duplicates/`` (removed, naming its cluster's survivor); every unreadable record is in
``rejected/``. The job re-reads what it wrote and checks this before publishing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType, StringType

from pipelines.config import DedupConfig, KeepPolicy
from pipelines.dedup.checkpoints import Checkpoints, run_key
from pipelines.dedup.components import connected_components
from pipelines.dedup.lsh import band_blocks, candidate_edges, lsh_parts
from pipelines.dedup.signatures import signature_scan
from pipelines.dedup.survivors import (cluster_sizes, cluster_survivors, exact_groups, giant_clusters,
                                       strongest_links)
from pipelines.dedup.skew import filter_ids
from pipelines.dedup.verify import score_edges, verify_edges
from pipelines.ids import TIEBREAK, assign_doc_ids, number_copies, repeated_hashes
from pipelines.io.paths import check_paths
from pipelines.io.publish import OutputDir
from pipelines.io.readers import InputError, read_corpus
from pipelines.report.dedup import write_dedup_report
from pipelines.spark_session import FittedSettings, get_spark
from pipelines.timing import StageTimer
from schemas.enforce import conform
from schemas.tables import DOC_ID, DUPLICATES, REJECTED, SIGNATURES
from udfs.lsh import optimal_bands_rows

log = logging.getLogger("corpus_prep.dedup")
# The job's largest shuffle carries up to about this many bytes per document: 7.5 KB on the
# 1.1 GB real corpus of BENCHMARKS.md (the shingle sets of uncertain pairs), 3.8 KB on a 0.3 GB
# prefix of it. Shuffle partitions are sized from the document count once the signature stage
# knows it; adaptive execution coalesces the partitions of smaller shuffles.
SHUFFLE_BYTES_PER_DOCUMENT = 8192


class AccountingError(RuntimeError):
    """The written output does not account for every input document exactly once."""


@dataclass
class DedupResult:
    output: str
    stats: dict


def choose_bands_rows(cfg: DedupConfig) -> tuple[int, int]:
    if cfg.lsh.bands is not None:
        return cfg.lsh.bands, cfg.lsh.rows
    return optimal_bands_rows(cfg.lsh.threshold, cfg.minhash.num_perm,
                              cfg.lsh.false_positive_weight, cfg.lsh.false_negative_weight)


def _check_priority_column(cfg: DedupConfig, corpus: DataFrame) -> None:
    """Fail before any scan if ``--keep priority`` names a column that cannot rank documents."""
    if cfg.keep is not KeepPolicy.PRIORITY:
        return
    column = cfg.keep_priority_column
    if column not in corpus.columns:
        raise InputError(f"--keep-priority column {column!r} not found; the input has columns "
                         f"{sorted(corpus.columns)}")
    dtype = corpus.schema[column].dataType
    if not isinstance(dtype, (NumericType, StringType)):
        raise InputError(f"--keep-priority column {column!r} has type {dtype.simpleString()}; "
                         "expected a number or a string")


def _rank_column(cfg: DedupConfig, documents: DataFrame) -> DataFrame | None:
    """``(doc_id, rank)``: what "best" means for survivor choice (see ``survivors``)."""
    if cfg.keep is KeepPolicy.PRIORITY:
        return documents.select(DOC_ID, F.col(f"`{cfg.keep_priority_column}`").alias("rank"))
    return None


def run_dedup(cfg: DedupConfig, spark: SparkSession | None = None) -> DedupResult:
    check_paths(cfg.input.path, cfg.output, cfg.overwrite)  # before Spark starts
    spark = spark or get_spark(cfg.spark)
    timer = StageTimer("dedup", spark)
    settings = {k: v for k, v in _config_dict(cfg).items() if k not in ("output", "overwrite", "spark")}
    out = OutputDir(spark, cfg.output, cfg.overwrite, run_key=run_key(spark, cfg.input.path, settings))
    checkpoint = Checkpoints(spark, out)
    fitted = FittedSettings(spark)
    try:
        stats, sigs = _run(spark, cfg, out, checkpoint, timer, fitted)
        stats["stage_seconds"] = dict(timer.seconds)  # as stats.json records them (report and publish come after)
        stats["resumed"] = {"from_earlier_run": out.resumed, "checkpoints_reused": checkpoint.reused,
                            "checkpoints_discarded": checkpoint.discarded}
        out.write_text("stats.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
        with timer.stage("report"):
            write_dedup_report(spark, cfg, out, stats, sigs)  # report.html + report/ beside stats.json
        with timer.stage("publish"):
            out.delete(out.path("_work"))
            out.publish()
    except BaseException as err:
        # Verified checkpoints outlive a failed run (a rerun reuses them), unless the input or the
        # result itself was at fault.
        out.abandon(keep_work=not isinstance(err, (InputError, AccountingError)))
        raise
    finally:
        fitted.restore()
    return DedupResult(cfg.output, stats)


def _run(spark: SparkSession, cfg: DedupConfig, out: OutputDir, checkpoint: Checkpoints,
         timer: StageTimer, fitted: FittedSettings) -> tuple[dict, DataFrame]:
    """The stages; returns the statistics and the ``SIGNATURES`` table (read from its checkpoint)."""
    with timer.stage("read") as progress:
        corpus = read_corpus(spark, cfg.input)
        for note in corpus.notes:
            log.warning(note)
        fitted.fit_documents(corpus.row_bytes, corpus.text_column)
        _check_priority_column(cfg, corpus.documents)
        documents, id_rejects = assign_doc_ids(corpus.documents, cfg.input.id_column)
        rejected = conform(corpus.rejected.unionByName(id_rejects), REJECTED, "rejected")
        rejected.write.parquet(out.path("rejected"))
        n_rejected = spark.read.schema(REJECTED).parquet(out.path("rejected")).count()
        progress.note(rejected=n_rejected)

    bands, rows = choose_bands_rows(cfg)
    with timer.stage("signatures") as progress:
        carry = (TIEBREAK,) if TIEBREAK in documents.columns else ()
        sigs = checkpoint(signature_scan(documents, corpus.text_column, cfg.minhash, bands, rows, carry),
                          "signatures")
        if carry:  # ids are row hashes: give repeated rows their own ids, here and in the documents
            repeated = checkpoint(repeated_hashes(sigs), "repeated-rows")
            sigs, documents = number_copies(repeated, sigs, documents)
        sigs = conform(sigs, SIGNATURES, "signatures")
        priority = _rank_column(cfg, documents)
        text_counts = sigs.agg(
            F.count(F.lit(1)).alias("documents"),
            F.count_if(F.col("normalized_length") == 0).alias("empty"),
            F.count_if((F.col("normalized_length") > 0) & (F.col("n_shingles") == 0)).alias("no_shingles"),
        ).first()
        n_documents = text_counts["documents"]
        fitted.fit_shuffle(n_documents * SHUFFLE_BYTES_PER_DOCUMENT)
        progress.rows_out = n_documents
        progress.note(empty=text_counts["empty"])

    with timer.stage("exact") as progress:
        progress.rows_in = n_documents
        # ranks: (doc_id, rank) for survivor choice; None when all documents rank equal
        # (smallest id wins), which needs no join at all.
        non_empty = sigs.filter(F.col("normalized_length") > 0)
        hashes = non_empty.select(DOC_ID, "exact_hash_hi", "exact_hash_lo")  # no signatures in this join
        if cfg.keep is KeepPolicy.LONGEST:
            ranks = sigs.select(DOC_ID, F.col("text_length").alias("rank"))
            ranked = non_empty.select(DOC_ID, "exact_hash_hi", "exact_hash_lo", F.col("text_length").alias("rank"))
        elif priority is not None:
            ranks = priority
            ranked = hashes.join(ranks, DOC_ID)
        else:
            ranks = None
            ranked = hashes.withColumn("rank", F.lit(0))
        exact = checkpoint(exact_groups(ranked, cfg.hub_degree), "exact")
        # Only one document of each exact-copy group goes on to LSH.
        copies = exact.filter(F.col(DOC_ID) != F.col("rep")).select(DOC_ID)
        lsh_input = filter_ids(non_empty.filter(F.col("n_shingles") > 0), copies, cfg.broadcast_removed_ids, keep=False)

    with timer.stage("lsh") as progress:
        parts = lsh_parts(fitted, n_documents, bands)
        candidates = checkpoint(candidate_edges(band_blocks(lsh_input, parts), parts, cfg.lsh), "candidates")
        progress.rows_out = checkpoint.rows.get("candidates")
    with timer.stage("verify") as progress:
        progress.rows_in = checkpoint.rows.get("candidates")
        # Every candidate is an LSH input document, so the checkpointed signatures serve as they
        # are: no second pass through the exact-copy join that selected those documents.
        scored = checkpoint(score_edges(candidates, sigs, cfg.minhash.num_perm), "scored")
        verification = verify_edges(scored, documents, corpus.text_column, cfg.lsh, cfg.minhash,
                                    cfg.broadcast_removed_ids, checkpoint)
        kept_edges = verification.edges
    with timer.stage("components") as progress:
        components = connected_components(kept_edges.select("src", "dst"), checkpoint, cfg.max_cc_rounds,
                                          cfg.hub_degree)
        progress.rows_in = checkpoint.rows.get("cc-input")
        progress.note(rounds=components.rounds)

    with timer.stage("survivors"):
        survivors = checkpoint(cluster_survivors(components.labels, ranks, cfg.hub_degree), "survivors")
        near = (survivors.filter(F.col(DOC_ID) != F.col("survivor"))
                .join(strongest_links(kept_edges), DOC_ID)
                .select(DOC_ID, F.col("survivor").alias("cluster_id"), "linked_to", "similarity",
                        F.lit("near").alias("match")))
        exact_removed = (exact.filter(F.col(DOC_ID) != F.col("rep"))
                         .join(survivors.select(F.col(DOC_ID).alias("rep"), "survivor"), "rep", "left")
                         .select(DOC_ID, F.coalesce("survivor", "rep").alias("cluster_id"),
                                 F.col("rep").alias("linked_to"), F.lit(1.0).alias("similarity"),
                                 F.lit("exact").alias("match")))
        duplicates = conform(near.unionByName(exact_removed), DUPLICATES, "duplicates")
        duplicates.write.parquet(out.path("duplicates"))
        duplicates = spark.read.schema(DUPLICATES).parquet(out.path("duplicates"))

    with timer.stage("write"):
        kept = filter_ids(documents, duplicates.select(DOC_ID), cfg.broadcast_removed_ids, keep=False)
        kept.write.parquet(out.path("data"))

    with timer.stage("check") as progress:
        written = spark.read.schema(kept.schema).parquet(out.path("data"))
        counts = _check_accounting(written, duplicates, n_documents)
        sizes = cluster_sizes(duplicates)
        clusters = sizes.agg(F.count(F.lit(1)).alias("clusters"), F.max("size").alias("largest"),
                             F.count_if(F.col("size") >= cfg.giant_cluster_size).alias("giant")).first()
        giants = giant_clusters(sizes, cfg.giant_cluster_size)
        edge_counts = scored.agg(F.count(F.lit(1)).alias("candidates"),
                                 F.count_if(F.col("similarity") >= cfg.lsh.threshold).alias("passed")).first()
        n_verified = kept_edges.count()
        exact_counts = _exact_counts(verification.exact, cfg.lsh.threshold)
        progress.rows_in = n_documents
        progress.rows_out = counts["kept"]
        progress.note(exact_duplicates=counts["exact"], near_duplicates=counts["near"])

    stats = {
        "input": cfg.input.path,
        "input_format": corpus.input_format,
        "text_column": corpus.text_column,
        "notes": corpus.notes,
        "input_records": n_documents + n_rejected,
        "documents": n_documents,
        "rejected": n_rejected,
        "empty": text_counts["empty"],
        "no_shingles": text_counts["no_shingles"],
        "exact_duplicates": counts["exact"],
        "near_duplicates": counts["near"],
        "kept": counts["kept"],
        "clusters": clusters["clusters"] or 0,
        "largest_cluster": clusters["largest"] or 0,
        "giant_cluster_count": clusters["giant"],
        "giant_clusters": giants,
        "bands": bands,
        "rows": rows,
        "candidate_edges": edge_counts["candidates"],
        "verified_edges": n_verified,
        "estimate_passed": edge_counts["passed"],
        "exact_verification": exact_counts,
        "cc_rounds": components.rounds,
        "config": _config_dict(cfg),
    }
    return stats, sigs


def _exact_counts(exact: DataFrame | None, threshold: float) -> dict | None:
    """How exact Jaccard decided the uncertain pairs, and where it overruled the estimate."""
    if exact is None:
        return None
    passed, estimate_passed = F.col("similarity") >= threshold, F.col("estimate") >= threshold
    row = exact.agg(F.count(F.lit(1)).alias("checked"), F.count_if(passed).alias("passed"),
                    F.count_if(estimate_passed & ~passed).alias("estimate_passed_exact_failed"),
                    F.count_if(~estimate_passed & passed).alias("estimate_failed_exact_passed")).first()
    return row.asDict()


def _check_accounting(data: DataFrame, duplicates: DataFrame, n_documents: int) -> dict:
    """Every document id exactly once across ``data`` and ``duplicates``, nothing else."""
    by_match = {r["match"]: r["count"] for r in duplicates.groupBy("match").count().collect()}
    kept = data.count()
    removed = sum(by_match.values())
    ids = data.select(DOC_ID).unionByName(duplicates.select(DOC_ID))
    distinct = ids.distinct().count()
    if kept + removed != n_documents or distinct != n_documents:
        raise AccountingError(f"{n_documents} documents in, but {kept} kept + {removed} removed "
                              f"with {distinct} distinct ids written; refusing to publish")
    return {"kept": kept, "exact": by_match.get("exact", 0), "near": by_match.get("near", 0)}


def _config_dict(cfg: DedupConfig) -> dict:
    data = asdict(cfg)
    data["keep"] = cfg.keep.value
    data["lsh"]["verify"] = cfg.lsh.verify.value
    return data
