"""The pack job: corpus -> tokenizer -> token streams -> packed shards -> manifest, published atomically.

Stages (all data stays on executors; the driver sees only counts and per-shard summaries):

1. **Read** with ``read_corpus``; a dedup output directory (``stats.json`` + ``data/``) is read
   through its ``data/`` and its stats go into the manifest.
2. **Tokenizer**: load ``--tokenizer`` or train byte-level BPE on the corpus
   (``pipelines.pack.tokenizer``); stored as ``DIR/tokenizer.json``.
3. **Tokenize** (``mapInArrow`` over Arrow batches, ``udfs.tokenize``): one row per input
   document with its key, status and ``[BOS] + ids + [EOS]`` as one ``binary`` value of the
   token dtype, plus its ``doc_id`` and ``source`` (``STREAMS``); written uncompressed to
   ``_work/tokens`` in the staging directory so the corpus is tokenized once and can be counted
   (overall and per source) from its small columns; ``DIR/documents/`` is those small columns.
4. **Shard count** from the token total: ``ceil(tokens * bytes_per_slot / target)`` with
   ``bytes_per_slot = token bytes + 4`` (the uncompressed row payload), or ``--num-shards``.
5. **Pack** (``mapInArrow``): documents hash-partitioned by key into that many partitions and
   sorted by key (then doc id) inside each; partition ``k`` packs its documents and writes
   shard ``k`` in every format, Megatron's unpacked (``pipelines.pack.shards``). Same input,
   same shards, byte for byte.
6. **Manifest** from the summaries and the counts; validated; renamed into place; ``_SUCCESS`` last.

Records that cannot be documents (malformed JSON, invalid UTF-8, ...) are written to
``DIR/rejected/`` as in the dedup job (schema ``schemas.rejected.REJECTED``), and
``stats.rejected_records`` counts that table's rows, so the count can be checked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StructField, StructType

from pipelines.arrow_tasks import map_in_arrow
from pipelines.config import InputConfig, PackConfig
from pipelines.dedup.ids import doc_id_column
from pipelines.io.hadoop import HadoopFs
from pipelines.io.paths import check_paths
from pipelines.io.publish import OutputDir
from pipelines.io.readers import InputError, read_corpus
from pipelines.pack import warm
from pipelines.pack.shards import Documents, ShardSpec, pack_partition_fn, write_shard
from pipelines.pack.tokenizer import TokenizerInfo, load_tokenizer_file, train_tokenizer
from pipelines.timing import StageTimer
from schemas.enforce import conform
from schemas.packed import (DOC_IDS, DOCUMENTS, DOCUMENTS_DIR, FEATURE_NAMES, FORMAT_VERSION, FORMATS, MEGATRON, PROVENANCE,
                            SHARD_SUMMARY, TOKENIZED, megatron_index_file, shard_file, token_dtype_for,
                            validate_manifest)
from schemas.rejected import REJECTED
from udfs.megatron import DTYPE_CODES
from udfs.tokenize import STATUS_EMPTY, STATUS_NULL, STATUS_OK, StreamSpec, ids_as_binary, tokenize_batch

log = logging.getLogger("corpus_prep.pack")
MANIFEST_SOURCES = 10_000  # sources listed in the manifest, largest first

# ``TOKENIZED`` with each stream as one binary value of the token dtype (``ids_as_binary``), and
# where each document came from (``PROVENANCE``).
STREAMS = StructType([StructField("ids", BinaryType(), False) if f.name == "ids" else f for f in TOKENIZED]
                     + PROVENANCE)


@dataclass
class PackResult:
    output: str
    manifest: dict
    stage_seconds: dict = field(default_factory=dict)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def resolve_input(spark: SparkSession, cfg: InputConfig) -> tuple[InputConfig, dict | None]:
    """A dedup output dir (``stats.json`` + ``data/``) is read through ``data/``; returns its stats."""
    fs = HadoopFs(spark)
    root = cfg.path.rstrip("/")
    try:
        is_dedup = fs.is_dir(root) and fs.exists(f"{root}/stats.json") and fs.is_dir(f"{root}/data")
    except Exception:  # a glob or an unreachable scheme: not a dedup dir; read_corpus reports errors
        is_dedup = False
    if not is_dedup:
        return cfg, None
    if not fs.exists(f"{root}/_SUCCESS"):
        raise InputError(f"{cfg.path!r} is a dedup output without _SUCCESS: incomplete (its run crashed or "
                         "has not finished publishing)")
    stats_path = f"{root}/stats.json"
    try:
        stats = json.loads(fs.read_text(stats_path))
    except ValueError as exc:  # not JSON, or not UTF-8
        raise InputError(f"{stats_path!r} is not valid JSON: {exc}") from exc
    data = InputConfig(path=f"{root}/data", text_column=cfg.text_column,
                       fallback_text_column=cfg.fallback_text_column, id_column=cfg.id_column,
                       input_format="parquet")
    return data, stats


def run_pack(cfg: PackConfig, spark: SparkSession | None = None, tokenizer: TokenizerInfo | None = None) -> PackResult:
    """``tokenizer``: ``cfg.tokenizer.path`` as :func:`load_tokenizer_file` loaded it, where the
    caller has already done so to refuse a bad file before Spark starts; otherwise loaded here."""
    from pipelines.spark_session import FittedSettings, get_spark, warm_python_workers

    # Before Spark starts: the paths, and a given tokenizer file with its special tokens.
    check_paths(cfg.input.path, cfg.output, cfg.overwrite)
    given = tokenizer or (load_tokenizer_file(cfg.tokenizer) if cfg.tokenizer.path else None)
    spark = spark or get_spark(cfg.spark)
    # a Python worker loads the kernels while the JVM reads the corpus and the tokenizer trains
    python_ready = warm_python_workers(spark, kernels=warm.load_kernels)
    input_cfg, dedup_stats = resolve_input(spark, cfg.input)
    corpus = read_corpus(spark, input_cfg)  # raises InputError before anything is written
    out = OutputDir(spark, _absolute(cfg.output), cfg.overwrite)
    timer = StageTimer("pack", spark)
    fitted = FittedSettings(spark)  # session settings sized to this input, restored when the run ends
    try:
        fitted.fit_code_generation(sum(f.size for f in HadoopFs(spark).files(input_cfg.path)))
        manifest, timings = _run(spark, cfg, corpus, input_cfg, dedup_stats, out, timer, given, python_ready)
        with timer.stage("publish"):
            out.delete(out.path("_work"))
            out.publish()
    except BaseException:
        out.abandon()
        raise
    finally:
        fitted.restore()
    return PackResult(out.final, manifest, timings)


def _tokenizer(cfg: PackConfig, corpus, given: TokenizerInfo | None) -> TokenizerInfo:
    return given or train_tokenizer(corpus.documents, corpus.text_column, cfg.tokenizer)


def _provenance(cfg: PackConfig, documents: DataFrame, dedup_stats: dict | None) -> list:
    """``doc_id`` and ``source`` columns of the documents (``schemas.packed.PROVENANCE``)."""
    if cfg.source_column is not None:
        if cfg.source_column not in documents.columns:
            raise InputError(f"--source-column {cfg.source_column!r} not found; the input has columns "
                             f"{sorted(documents.columns)}")
        source = F.col(f"`{cfg.source_column}`").cast("string")
    elif dedup_stats is not None:  # the files of a dedup output say nothing; the corpus it read does
        source = F.lit(str(dedup_stats.get("input", cfg.input.path)))
    else:  # the file each row was read from (empty for inputs not read from files)
        source = F.when(F.input_file_name() == "", F.lit(cfg.input.path)).otherwise(F.input_file_name())
    return [doc_id_column(documents).alias("doc_id"), source.alias("source")]


def _tokenize(documents: DataFrame, text_column: str, provenance: list, spec: StreamSpec,
              token_dtype: str) -> DataFrame:
    np_dtype = ShardSpec.numpy_dtype(token_dtype)

    def run(batches):
        # Spark runs one task per core; a tokenizer thread pool inside each task only oversubscribes
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        for batch in batches:
            streams = ids_as_binary(tokenize_batch(batch.column(0), spec), np_dtype)
            yield pa.RecordBatch.from_arrays([*streams.columns, batch.column(1), batch.column(2)],
                                             names=[*streams.schema.names, "doc_id", "source"])

    return map_in_arrow(documents.select(F.col(text_column), *provenance), run, STREAMS)


def _counts(tokenized: DataFrame, seq_len: int) -> tuple[dict, dict]:
    """The tokenize stage's counts, overall and per source, from one aggregate over the small columns."""
    size = F.col("n_stream")
    rows = tokenized.groupBy("source").agg(
        F.count(F.lit(1)).alias("input_documents"),
        F.sum((F.col("status") == STATUS_NULL).cast("long")).alias("null_text"),
        F.sum((F.col("status") == STATUS_EMPTY).cast("long")).alias("empty_text"),
        F.sum((F.col("status") == STATUS_OK).cast("long")).alias("documents"),
        F.sum("n_content").alias("content_tokens"),
        F.sum("n_dropped").alias("tokens_dropped"),
        F.sum(size).alias("stream_tokens"),
        F.sum((size > seq_len).cast("long")).alias("documents_split"),
        F.max(size).alias("longest_document"),
    ).collect()
    by_source = {r["source"]: {k: int(v or 0) for k, v in r.asDict().items() if k != "source"} for r in rows}
    keys = ("input_documents", "null_text", "empty_text", "documents", "content_tokens", "tokens_dropped",
            "stream_tokens", "documents_split")
    counts = {k: sum(c[k] for c in by_source.values()) for k in keys}
    counts["longest_document"] = max((c["longest_document"] for c in by_source.values()), default=0)
    return counts, by_source


def shard_count(cfg: PackConfig, stream_tokens: int, documents: int, token_bytes: int) -> int:
    if cfg.num_shards is not None:
        return cfg.num_shards
    payload = stream_tokens * (token_bytes + 4)
    return max(1, min(max(documents, 1), math.ceil(payload / cfg.target_shard_bytes)))


def _run(spark: SparkSession, cfg: PackConfig, corpus, input_cfg: InputConfig, dedup_stats: dict | None,
         out: OutputDir, timer: StageTimer, given: TokenizerInfo | None,
         python_ready: threading.Event) -> tuple[dict, dict]:
    with timer.stage("tokenizer") as progress:
        tok = _tokenizer(cfg, corpus, given)
        for note in tok.notes:
            log.warning(note)
        out.write_text("tokenizer.json", tok.json)
        progress.note(vocab_size=tok.vocab_size)
    token_dtype = token_dtype_for(tok.vocab_size)

    with timer.stage("tokenize") as progress:
        spec = StreamSpec(tok.json, tok.eos_id, tok.bos_id, cfg.max_doc_tokens)
        work = out.path("_work", "tokens")
        provenance = _provenance(cfg, corpus.documents, dedup_stats)
        python_ready.wait()  # the first tokenizing task then finds the warmed worker idle
        (_tokenize(corpus.documents, corpus.text_column, provenance, spec, token_dtype)
         .write.mode("overwrite").option("compression", "none").parquet(work))
        tokenized = spark.read.schema(STREAMS).parquet(work)
        counts, by_source = _counts(tokenized, cfg.seq_len)
        conform(tokenized.withColumnRenamed("n_stream", "tokens"), DOCUMENTS, "documents").write.parquet(
            out.path(DOCUMENTS_DIR))
        conform(corpus.rejected, REJECTED, "rejected").write.parquet(out.path("rejected"))
        rejected = spark.read.schema(REJECTED).parquet(out.path("rejected")).count()
        progress.note(rows_in=counts["input_documents"], rows_out=counts["documents"], tokens=counts["stream_tokens"])

    with timer.stage("pack") as progress:
        n_shards = shard_count(cfg, counts["stream_tokens"], counts["documents"], 2 if token_dtype == "uint16" else 4)
        shard_spec = ShardSpec(staging=out.staging, seq_len=cfg.seq_len, pad_id=tok.pad_id,
                               token_dtype=token_dtype, method=cfg.packing, formats=tuple(cfg.formats),
                               shuffle_rows=cfg.shuffle_rows, seed=cfg.seed,
                               compression=cfg.parquet_compression, row_group_rows=cfg.parquet_row_group_rows,
                               feature_names=cfg.feature_names)
        # equal keys are equal texts; the doc id orders copies, so their ids land in the same slots every run
        docs = (tokenized.filter(F.col("status") == STATUS_OK).select("key_hi", "key_lo", "doc_id", "ids")
                .repartition(n_shards, "key_hi").sortWithinPartitions("key_hi", "key_lo", "doc_id"))
        summaries = [r.asDict() for r in map_in_arrow(docs, pack_partition_fn(shard_spec), SHARD_SUMMARY).collect()]
        by_shard = {s["shard"]: s for s in summaries}
        if len(by_shard) != len(summaries):
            raise RuntimeError("two packing tasks reported the same shard")
        for index in range(n_shards):  # partitions that received no documents
            if index not in by_shard:
                by_shard[index] = write_shard(index, Documents.empty(shard_spec.np_token_dtype), shard_spec, "driver")
        progress.note(rows_in=counts["documents"], rows_out=sum(s["rows"] for s in summaries), shards=n_shards)

    manifest = build_manifest(cfg, tok, token_dtype, [by_shard[i] for i in range(n_shards)], counts,
                              rejected, corpus, input_cfg.path, dedup_stats, by_source)
    validate_manifest(manifest)
    if manifest["totals"]["tokens"] != counts["stream_tokens"]:
        raise RuntimeError(f"packed {manifest['totals']['tokens']} tokens but tokenized "
                           f"{counts['stream_tokens']}: a shard is missing or duplicated")
    out.write_text("manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest, timer.seconds


def _by_source(by_source: dict) -> dict:
    """Per-source documents and tokens for the manifest: the largest ``MANIFEST_SOURCES`` sources by tokens
    (one per input file can be very many; ``documents/`` has every document's source)."""
    ranked = sorted(by_source.items(), key=lambda kv: (-kv[1]["stream_tokens"], str(kv[0])))
    return {"sources": len(ranked), "listed": min(len(ranked), MANIFEST_SOURCES),
            "by_source": {str(name): {"documents": c["documents"], "tokens": c["stream_tokens"],
                                      "content_tokens": c["content_tokens"], "input_documents": c["input_documents"]}
                          for name, c in ranked[:MANIFEST_SOURCES]}}


def _megatron(token_dtype: str, tok: TokenizerInfo, shards: list[dict]) -> dict:
    """Where Megatron-LM / NeMo find the documents: ``data_path`` prefixes (``--data-path``), dtype, EOD id."""
    files = [{"prefix": shard_file(MEGATRON, s["shard"]).removesuffix(".bin"), "file": shard_file(MEGATRON, s["shard"]),
              "idx_file": megatron_index_file(s["shard"]), "documents": s["documents"], "tokens": s["tokens"],
              "sha256": s["megatron_sha256"], "bytes": s["megatron_bytes"], "idx_sha256": s["megatron_idx_sha256"],
              "idx_bytes": s["megatron_idx_bytes"]} for s in shards]
    return {"dtype": token_dtype, "dtype_code": DTYPE_CODES[np.dtype(token_dtype)],
            "eod_id": tok.eos_id, "bos_id": tok.bos_id, "data_path": [f["prefix"] for f in files],
            "documents": sum(f["documents"] for f in files), "tokens": sum(f["tokens"] for f in files),
            "files": files}


def build_manifest(cfg: PackConfig, tok: TokenizerInfo, token_dtype: str, shards: list[dict],
                   counts: dict, rejected: int, corpus, read_path: str, dedup_stats: dict | None,
                   by_source: dict | None = None) -> dict:
    entries = {fmt: [{"file": shard_file(fmt, s["shard"]), "rows": s["rows"], "tokens": s["tokens"],
                      "padding_tokens": s["padding_tokens"], "documents": s["documents"],
                      "sha256": s[f"{fmt}_sha256"], "bytes": s[f"{fmt}_bytes"]} for s in shards]
               for fmt in cfg.formats if fmt in FORMATS}
    rows = sum(s["rows"] for s in shards)
    tokens = sum(s["tokens"] for s in shards)
    padding = sum(s["padding_tokens"] for s in shards)
    documents = sum(s["documents"] for s in shards)
    split = sum(s["documents_split"] for s in shards)
    totals = {"rows": rows, "tokens": tokens, "padding_tokens": padding, "documents": documents,
              "shards": len(shards), "bytes": {fmt: sum(e["bytes"] for e in entries[fmt]) for fmt in entries}}
    stats = {
        "fill_rate": tokens / (rows * cfg.seq_len) if rows else 0.0,
        "documents": documents,
        "documents_split": split,
        "fraction_split": split / documents if documents else 0.0,
        "pieces": sum(s["pieces"] for s in shards),
        "tokens_dropped": counts["tokens_dropped"],
        "max_doc_tokens": cfg.max_doc_tokens,
        "content_tokens": counts["content_tokens"],
        "special_tokens": tokens - (counts["content_tokens"] - counts["tokens_dropped"]),
        "input_documents": counts["input_documents"],
        "null_text": counts["null_text"],
        "empty_text": counts["empty_text"],
        "rejected_records": rejected,
        "longest_document": counts["longest_document"],
    }
    source = {"path": cfg.input.path, "read": read_path, "format": corpus.input_format,
              "text_column": corpus.text_column, "notes": list(corpus.notes),
              "source_column": cfg.source_column, **_by_source(by_source or {})}
    return {
        "format_version": FORMAT_VERSION,
        "seq_len": cfg.seq_len,
        "vocab_size": tok.vocab_size,
        "token_dtype": token_dtype,
        "pad_id": tok.pad_id,
        "eos_id": tok.eos_id,
        "bos_id": tok.bos_id,
        # encoders: [MASK], and the [CLS]/[SEP] that frame each document (the BOS/EOS above)
        "mask_id": tok.mask_id,
        "cls_id": tok.bos_id if tok.mask_id is not None else None,
        "sep_id": tok.eos_id if tok.mask_id is not None else None,
        "tokenizer": "tokenizer.json",
        "tokenizer_sha256": tok.sha256,
        "tokenizer_source": ({"file": cfg.tokenizer.path} if cfg.tokenizer.path else
                             {"trained": True, "model": cfg.tokenizer.model,
                              "vocab_size_requested": cfg.tokenizer.vocab_size,
                              "min_frequency": cfg.tokenizer.min_frequency,
                              "trained_on_bytes": tok.trained_on_bytes}),
        "packing": cfg.packing,
        "shuffle_rows": cfg.shuffle_rows,
        "seed": cfg.seed,
        "shards": entries,
        "features": {"scheme": cfg.feature_names, "columns": FEATURE_NAMES[cfg.feature_names], "doc_ids": DOC_IDS},
        **({MEGATRON: _megatron(token_dtype, tok, shards)} if MEGATRON in cfg.formats else {}),
        "documents_table": DOCUMENTS_DIR,
        "totals": totals,
        "stats": stats,
        "source": source,
        "dedup_stats": dedup_stats,
    }
