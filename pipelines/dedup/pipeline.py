"""The dedup job: read → ids → signatures → exact groups → LSH → verify → components → survivors →
write → check → publish.

Accounting: every readable input document ends in exactly one of ``data/`` (kept) or
``duplicates/`` (removed, naming its cluster's survivor); every unreadable record is in
``rejected/``. The job re-reads what it wrote and checks this before publishing.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType, StringType

from pipelines.config import DedupConfig, KeepPolicy, settings_dict
from pipelines.dedup.against import Against
from pipelines.dedup.checkpoints import Checkpoints, observed_write, run_key
from pipelines.dedup.components import Components, connected_components
from pipelines.dedup.exact import exact_copies, exact_groups, lsh_input
from pipelines.dedup.index import (IndexedRun, IndexWriter, earlier_runs, index_settings, index_writers,
                                   read_indexes, segment_tables)
from pipelines.dedup.ids import TIEBREAK, assign_doc_ids, number_copies, repeated_hashes
from pipelines.dedup.lsh import band_blocks, candidate_edges, lsh_parts
from pipelines.dedup.signatures import signature_scan
from pipelines.dedup.skew import filter_ids
from pipelines.dedup.survivors import (ClusterSummary, cluster_summary, cluster_survivors, duplicates_table,
                                       ranked_hashes, survivor_ranks)
from pipelines.dedup.verify import Verification, score_edges, scored_counts, verification_counts, verify_edges
from pipelines.io.hadoop import HadoopFs
from pipelines.io.paths import check_paths
from pipelines.io.publish import OutputDir
from pipelines.io.readers import Corpus, InputError, read_corpus
from pipelines.report.dedup import write_dedup_report
from pipelines.spark_session import FittedSettings, concurrently, get_spark, warm_python_workers
from pipelines.timing import StageTimer
from schemas.dedup import DOC_ID, DUPLICATES, SIGNATURES
from schemas.enforce import conform
from schemas.rejected import REJECTED
from udfs.banding import optimal_bands_rows

log = logging.getLogger("corpus_prep.dedup")
# The job's largest shuffle carries up to about this many bytes per document: exact
# verification's texts of the documents in uncertain pairs, 3.6 KB per document on the 1-4 GB
# real slices of BENCHMARKS.md (7.5 KB when it shuffled shingle sets per pair); 8 KB leaves room
# for a corpus with more pairs near the threshold. Shuffle partitions are sized from the document
# count once the signature stage knows it; adaptive execution coalesces smaller shuffles' partitions.
SHUFFLE_BYTES_PER_DOCUMENT = 8192
# From this many bytes of input files the signature scan is a task per core, each in a Python worker
# of its own; all of them are warmed, once the read stage's jobs no longer need the cores (a cold
# worker holds its task back by its start: about 1.5 s of imports and kernel loading).
WARM_EVERY_WORKER_BYTES = 64 * 2**20


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


def indexed_runs(cfg: DedupConfig, fs: HadoopFs) -> list[IndexedRun]:
    """``--against``: the earlier runs this run is matched against (none without indexes)."""
    return earlier_runs(read_indexes(cfg, *choose_bands_rows(cfg)), fs, cfg.output)


def run_dedup(cfg: DedupConfig, spark: SparkSession | None = None) -> DedupResult:
    check_paths(cfg.input.path, cfg.output, cfg.overwrite)  # before Spark starts
    bands_rows = choose_bands_rows(cfg)
    indexed = read_indexes(cfg, *bands_rows)  # --against: manifests and settings, before Spark too
    spark = spark or get_spark(cfg.spark)
    python_ready = warm_python_workers(spark)  # while the JVM alone lists and reads the corpus
    timer = StageTimer("dedup", spark)
    fs = HadoopFs(spark)
    earlier = earlier_runs(indexed, fs, cfg.output)
    files = fs.files(cfg.input.path)
    key = run_key(fs, cfg, [run.id for run in earlier], files)
    out = OutputDir(spark, cfg.output, cfg.overwrite, run_key=key)
    checkpoint = Checkpoints(spark, out)
    against = Against(spark, earlier, cfg) if earlier else None
    writers = index_writers(spark, cfg, key, index_settings(cfg, *bands_rows), earlier)
    fitted = FittedSettings(spark)
    try:
        input_bytes = sum(f.size for f in files)
        if not earlier:  # matched against indexes, a small input still meets their band blocks and texts
            fitted.fit_code_generation(input_bytes)
        stats, sigs, clusters = _Stages(spark, cfg, out, checkpoint, timer, fitted, python_ready,
                                         input_bytes, against, writers).run()
        stats["stage_seconds"] = dict(timer.seconds)  # as stats.json records them (report and publish come after)
        stats["resumed"] = {"from_earlier_run": out.resumed, "checkpoints_reused": checkpoint.reused,
                            "checkpoints_discarded": checkpoint.discarded}
        out.write_text("stats.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
        with timer.stage("report"):
            write_dedup_report(spark, cfg, out, stats, sigs, clusters)  # report.html + report/ beside stats.json
        with timer.stage("publish"):
            out.delete(out.path("_work"))
            out.publish()
            for writer in writers:  # after the output: an index points to its data/
                writer.publish()
    except BaseException as err:
        # Verified checkpoints outlive a failed run (a rerun reuses them), unless the input or the
        # result itself was at fault.
        out.abandon(keep_work=not isinstance(err, (InputError, AccountingError)))
        for writer in writers:
            writer.abandon()
        raise
    finally:
        fitted.restore()
    return DedupResult(cfg.output, stats)


class _Stages:
    """The stages of one run, each a method that times itself; :meth:`run` calls them in order.

    ``against``: the indexes of earlier runs (``pipelines.dedup.against``: one hook per stage);
    ``writers``: the indexes this run writes (``pipelines.dedup.index``).
    """

    def __init__(self, spark: SparkSession, cfg: DedupConfig, out: OutputDir, checkpoint: Checkpoints,
                 timer: StageTimer, fitted: FittedSettings, python_ready: threading.Event, input_bytes: int,
                 against: Against | None = None, writers: list[IndexWriter] | None = None) -> None:
        self.spark, self.cfg, self.out, self.checkpoint, self.timer = spark, cfg, out, checkpoint, timer
        self.fitted = fitted  # session settings sized to this input (restored when the run ends)
        self.python_ready = python_ready  # set once a Python worker has loaded the kernels
        self.input_bytes = input_bytes  # the size of the input's files, as the run key listed them
        self.against, self.writers = against, writers or []
        self.matched: DataFrame | None = None  # --against: documents with an exact copy in an index

    def run(self) -> tuple[dict, DataFrame, ClusterSummary]:
        """Returns the statistics, the ``SIGNATURES`` table (read from its checkpoint) and the clusters."""
        cfg = self.cfg
        corpus, documents, n_rejected = self.read()
        bands, rows = choose_bands_rows(cfg)
        sigs, documents, text_counts = self.signatures(corpus, documents, bands, rows)
        ranks = survivor_ranks(cfg.keep, cfg.keep_priority_column, sigs, documents)
        exact, lsh_documents = self.exact(sigs, ranks, text_counts["documents"])
        candidates = self.lsh(lsh_documents, text_counts["documents"], bands)
        verification = self.verify(candidates, sigs, lsh_documents, documents, corpus.text_column)
        components = self.components(verification.edges)
        duplicates = self.survivors(components.labels, ranks, exact, verification.edges)
        kept = self.write(documents, duplicates, text_counts["documents"])
        if self.writers:
            self.index(sigs, lsh_documents, duplicates, documents, corpus.text_column)
        checked, clusters = self.check(kept, duplicates, text_counts["documents"])
        stats = _stats(cfg, corpus, n_rejected, text_counts, bands, rows, components.rounds, checked)
        if self.against is not None:
            stats["index"] = self.against.stats(duplicates, self.checkpoint.rows["index-exact"])
        return stats, sigs, clusters

    def read(self) -> tuple[Corpus, DataFrame, int]:
        """The corpus, its documents with ids, and how many records went to ``rejected/``."""
        with self.timer.stage("read") as progress:
            corpus = read_corpus(self.spark, self.cfg.input)
            for note in corpus.notes:
                log.warning(note)
            self.fitted.fit_documents(corpus.row_bytes, corpus.text_column)
            _check_priority_column(self.cfg, corpus.documents)
            documents, id_rejects = assign_doc_ids(corpus.documents, self.cfg.input.id_column)
            rejected = conform(corpus.rejected.unionByName(id_rejects), REJECTED, "rejected")
            n_rejected = observed_write(rejected, self.out.path("rejected"), F.count(F.lit(1)).alias("rows"))["rows"]
            progress.note(rejected=n_rejected)
        return corpus, documents, n_rejected

    def signatures(self, corpus: Corpus, documents: DataFrame, bands: int,
                   rows: int) -> tuple[DataFrame, DataFrame, dict[str, int]]:
        """The ``SIGNATURES`` table, the documents under their final ids, and the text counts."""
        with self.timer.stage("signatures") as progress:
            if self.input_bytes >= WARM_EVERY_WORKER_BYTES:
                self.python_ready = warm_python_workers(self.spark, self.spark.sparkContext.defaultParallelism)
            self.python_ready.wait()  # the scan's tasks then find warmed workers idle
            carry = (TIEBREAK,) if TIEBREAK in documents.columns else ()
            length, shingles = F.col("normalized_length"), F.col("n_shingles")
            counts = {"empty": F.count_if(length == 0), "no_shingles": F.count_if((length > 0) & (shingles == 0))}
            sigs = self.checkpoint(signature_scan(documents, corpus.text_column, self.cfg.minhash, bands, rows,
                                                  carry), "signatures", counts)
            if carry:  # ids are row hashes: give repeated rows their own ids, here and in the documents
                repeated = repeated_hashes(sigs)
                if repeated.isEmpty():  # the rule: no row repeats whole, one small job says so
                    sigs, documents = sigs.drop(TIEBREAK), documents.drop(TIEBREAK)
                else:  # checkpointed: every later query over the numbered tables joins it
                    sigs, documents = number_copies(self.checkpoint(repeated, "repeated-rows"), sigs, documents)
            sigs = conform(sigs, SIGNATURES, "signatures")
            text_counts = {"documents": self.checkpoint.rows["signatures"], **self.checkpoint.counts["signatures"]}
            self.fitted.fit_shuffle(text_counts["documents"] * SHUFFLE_BYTES_PER_DOCUMENT)
            progress.note(rows_out=text_counts["documents"], empty=text_counts["empty"])
        return sigs, documents, text_counts

    def exact(self, sigs: DataFrame, ranks: DataFrame | None, n_documents: int) -> tuple[DataFrame, DataFrame]:
        """The exact groups ``(doc_id, rep)`` and the documents LSH compares."""
        with self.timer.stage("exact") as progress:
            progress.note(rows_in=n_documents)
            texts = sigs.filter(F.col("normalized_length") > 0)
            ranked = ranked_hashes(texts, ranks, self.cfg.keep)
            exact = self.checkpoint(exact_groups(ranked, self.cfg.hub_degree), "exact")
            if self.against is None:
                return exact, lsh_input(texts, exact, self.cfg.broadcast_removed_ids, n_documents)
            # Documents with an indexed exact copy leave their groups and LSH.
            self.against.check_ids(sigs)
            hashes = texts.select(DOC_ID, "exact_hash_hi", "exact_hash_lo")
            self.matched = self.checkpoint(self.against.exact_matches(hashes), "index-exact")
            exact = exact.join(self.matched.select(DOC_ID), DOC_ID, "left_anti")
            return exact, lsh_input(texts, exact, self.cfg.broadcast_removed_ids, n_documents,
                                    also_removed=self.matched)

    def lsh(self, documents: DataFrame, n_documents: int, bands: int) -> DataFrame:
        with self.timer.stage("lsh") as progress:
            indexed_documents = self.against.indexed_documents if self.against is not None else 0
            parts = lsh_parts(self.fitted, n_documents + indexed_documents, bands)
            indexed = self.against.band_blocks(parts) if self.against is not None else None
            candidates = self.checkpoint(candidate_edges(band_blocks(documents, parts), parts, self.cfg.lsh, indexed),
                                         "candidates")
            progress.note(rows_out=self.checkpoint.rows.get("candidates"))
        return candidates

    def verify(self, candidates: DataFrame, sigs: DataFrame, lsh_documents: DataFrame, documents: DataFrame,
               text_column: str) -> Verification:
        """The verified edges (the scored candidates' counts go to ``stats.json``)."""
        against = self.against
        with self.timer.stage("verify") as progress:
            progress.note(rows_in=self.checkpoint.rows.get("candidates"))
            # Every candidate is an LSH input document, so the checkpointed signatures serve as they
            # are: no second pass through the exact-copy join that selected those documents.
            scoring = sigs if against is None else against.signatures(lsh_documents, candidates)
            scored = self.checkpoint(score_edges(candidates, scoring, self.cfg.minhash.num_perm,
                                                 self.cfg.broadcast_removed_ids, self.cfg.hub_degree,
                                                 self.checkpoint.driver_table), "scored",
                                     scored_counts(self.cfg.lsh, self.cfg.minhash.num_perm))
            texts = documents if against is None else against.documents(documents, text_column, scored, self.matched)
            verification = verify_edges(scored, texts, text_column, self.cfg.lsh, self.cfg.minhash,
                                        self.cfg.broadcast_removed_ids, self.cfg.hub_degree,
                                        self.checkpoint)
            if against is not None:
                against.check_texts(scored, self.checkpoint.rows.get("exact-scores"))
        return verification

    def components(self, edges: DataFrame) -> Components:
        with self.timer.stage("components") as progress:
            verified = self._edge_counts()["verified_edges"]
            components = connected_components(edges.select("src", "dst"), self.checkpoint, self.cfg.max_cc_rounds,
                                              self.cfg.hub_degree, edges_at_most=verified)
            progress.note(rows_in=self.checkpoint.rows.get("cc-input"), rounds=components.rounds)
        return components

    def survivors(self, labels: DataFrame, ranks: DataFrame | None, exact: DataFrame,
                  edges: DataFrame) -> DataFrame:
        """``duplicates/``, written and read back."""
        with self.timer.stage("survivors"):
            if self.against is None:
                survivors = self.checkpoint(cluster_survivors(labels, ranks, self.cfg.hub_degree), "survivors")
            else:  # with a "match" column: "index" where the cluster holds indexed documents
                survivors = self.checkpoint(self.against.survivors(labels, ranks, self.cfg.hub_degree), "survivors")
            duplicates_table(survivors, exact_copies(exact), edges, self.matched).write.parquet(
                self.out.path("duplicates"))
            return self.spark.read.schema(DUPLICATES).parquet(self.out.path("duplicates"))

    def write(self, documents: DataFrame, duplicates: DataFrame, n_documents: int) -> DataFrame:
        """``data/``: the documents not in ``duplicates`` (of the ``n_documents``)."""
        with self.timer.stage("write"):
            kept = filter_ids(documents, duplicates.select(DOC_ID), self.cfg.broadcast_removed_ids, keep=False,
                              at_most=n_documents)
            kept.write.parquet(self.out.path("data"))
        return kept

    def index(self, sigs: DataFrame, lsh_documents: DataFrame, duplicates: DataFrame, documents: DataFrame,
              text_column: str) -> None:
        """``--save-index`` / ``--update-index``: every document of this run, staged beside the output."""
        with self.timer.stage("index"):
            tables = segment_tables(sigs, lsh_documents, duplicates, documents, text_column,
                                    self.against.ids() if self.against is not None else None)
            here = HadoopFs(self.spark).qualified(self.cfg.output)
            run = {"output": here, "data": f"{here}/data", "text_column": text_column, "input": self.cfg.input.path}
            for writer in self.writers:
                writer.write(*tables, run)

    def _edge_counts(self) -> dict:
        """The edge figures of ``stats.json``, from the counts observed on the verify stage's checkpoints."""
        return verification_counts(self.checkpoint.counts["scored"], self.checkpoint.counts.get("exact-scores"))

    def check(self, kept: DataFrame, duplicates: DataFrame, n_documents: int) -> tuple[dict, ClusterSummary]:
        """Accounting of the written output, then the counts of ``stats.json`` it does not yet have
        and the clusters' summary."""
        with self.timer.stage("check") as progress:
            written = self.spark.read.schema(kept.schema).parquet(self.out.path("data"))
            counts, clusters = concurrently(self.spark, lambda: check_accounting(written, duplicates, n_documents),
                                            lambda: cluster_summary(duplicates))
            edges = self._edge_counts()
            progress.note(rows_in=n_documents, rows_out=counts["kept"], exact_duplicates=counts["exact"],
                          near_duplicates=counts["near"])
        return {"exact_duplicates": counts["exact"], "near_duplicates": counts["near"], "kept": counts["kept"],
                **({"index_duplicates": counts["index"]} if self.against is not None else {}),
                **clusters.counts(self.cfg.giant_cluster_size), **edges}, clusters


def _stats(cfg: DedupConfig, corpus: Corpus, n_rejected: int, text_counts: dict[str, int], bands: int, rows: int,
           cc_rounds: int, checked: dict) -> dict:
    """``stats.json`` less what comes after the stages (``stage_seconds``, ``resumed``)."""
    return {
        "input": cfg.input.path,
        "input_format": corpus.input_format,
        "text_column": corpus.text_column,
        "notes": corpus.notes,
        "input_records": text_counts["documents"] + n_rejected,
        "documents": text_counts["documents"],
        "rejected": n_rejected,
        "empty": text_counts["empty"],
        "no_shingles": text_counts["no_shingles"],
        "bands": bands,
        "rows": rows,
        "cc_rounds": cc_rounds,
        **checked,
        "config": _config_dict(cfg),
    }


OUTCOMES = ("kept", "exact", "near", "index")  # a document's row: in data/, or in duplicates/ by its match


def check_accounting(data: DataFrame, duplicates: DataFrame, n_documents: int) -> dict:
    """Every document id exactly once across ``data`` and ``duplicates``, nothing else.

    One aggregation over the ids of both tables counts the rows of each outcome, all rows and
    the distinct ids: ``n_documents`` of each, and no row of another kind, or nothing is published.
    """
    outcome = F.col("match")
    rows = data.select(DOC_ID, F.lit("kept").alias("match")).unionByName(duplicates.select(DOC_ID, "match"))
    per_id = rows.groupBy(DOC_ID).agg(F.count(F.lit(1)).alias("rows"),
                                      *[F.count_if(outcome == name).alias(name) for name in OUTCOMES])
    totals = per_id.agg(F.count(F.lit(1)).alias("distinct"), F.sum("rows").alias("rows"),
                        *[F.sum(name).alias(name) for name in OUTCOMES]).first()
    counts = {name: totals[name] or 0 for name in OUTCOMES}
    written, distinct = totals["rows"] or 0, totals["distinct"]
    if written != n_documents or distinct != n_documents or sum(counts.values()) != written:
        raise AccountingError(f"{n_documents} documents in, but {counts['kept']} kept + {written - counts['kept']} "
                              f"removed with {distinct} distinct ids written; refusing to publish")
    return counts


def _config_dict(cfg: DedupConfig) -> dict:
    data = settings_dict(cfg)
    data["keep"] = cfg.keep.value
    data["lsh"]["verify"] = cfg.lsh.verify.value
    return data
