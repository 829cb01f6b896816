"""The pack job: corpus -> tokenizer -> token streams -> packed shards -> manifest, published atomically.

Stages (all data stays on executors; the driver sees only counts and per-shard summaries):

1. **Read** with ``read_corpus``; a dedup output directory (``stats.json`` + ``data/``) is read
   through its ``data/`` and its stats go into the manifest.
2. **Tokenizer**: load ``--tokenizer`` or train byte-level BPE on the corpus
   (``pipelines.pack.tokenizer``); stored as ``DIR/tokenizer.json``.
3. **Tokenize** (``mapInArrow`` over Arrow batches, ``udfs.tokenize``): one row per input
   document with its key, status and ``[BOS] + ids + [EOS]`` as one ``binary`` value of the
   token dtype (``STREAMS``); written uncompressed to ``_work/tokens`` in the staging
   directory so the corpus is tokenized once and can be counted from its small columns.
4. **Shard count** from the token total: ``ceil(tokens * bytes_per_slot / target)`` with
   ``bytes_per_slot = token bytes + 4`` (the uncompressed row payload), or ``--num-shards``.
5. **Pack** (``mapInArrow``): documents hash-partitioned by key into that many partitions and
   sorted by key inside each; partition ``k`` packs its documents and writes shard ``k``
   (``pipelines.pack.shards``). Same input, same shards, byte for byte.
6. **Manifest** from the summaries and the counts; validated; ``_SUCCESS``; atomic rename.

Records that cannot be documents (malformed JSON, invalid UTF-8, ...) are written to
``DIR/rejected/`` as in the dedup job (schema ``schemas.tables.REJECTED``), and
``stats.rejected_records`` counts that table's rows, so the count can be checked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StructField, StructType

from pipelines.config import InputConfig, PackConfig
from pipelines.io.paths import check_paths
from pipelines.io.publish import OutputDir
from pipelines.io.readers import InputError, read_corpus
from pipelines.pack.shards import ShardSpec, empty_rows, pack_partition_fn, write_shard
from pipelines.pack.tokenizer import TokenizerInfo, load_tokenizer_file, train_tokenizer
from schemas.enforce import conform
from schemas.packed import (FORMAT_VERSION, SHARD_SUMMARY, TOKENIZED, shard_file, token_dtype_for,
                            validate_manifest)
from schemas.tables import REJECTED
from udfs.tokenize import STATUS_EMPTY, STATUS_NULL, STATUS_OK, StreamSpec, ids_as_binary, tokenize_batch

log = logging.getLogger("pack")

# ``TOKENIZED`` with each stream as one binary value of the token dtype (``ids_as_binary``).
STREAMS = StructType([StructField("ids", BinaryType(), False) if f.name == "ids" else f for f in TOKENIZED])


@dataclass
class PackResult:
    output: str
    manifest: dict
    stage_seconds: dict = field(default_factory=dict)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def resolve_input(spark: SparkSession, cfg: InputConfig) -> tuple[InputConfig, dict | None]:
    """A dedup output dir (``stats.json`` + ``data/``) is read through ``data/``; returns its stats."""
    jvm = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(cfg.path)
    try:
        fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        is_dedup = (fs.isDirectory(root) and fs.exists(jvm.org.apache.hadoop.fs.Path(cfg.path, "stats.json"))
                    and fs.isDirectory(jvm.org.apache.hadoop.fs.Path(cfg.path, "data")))
    except Exception:  # a glob or an unreachable scheme: not a dedup dir; read_corpus reports errors
        is_dedup = False
    if not is_dedup:
        return cfg, None
    stats_path = cfg.path.rstrip("/") + "/stats.json"
    text = "".join(r.value for r in spark.read.text(stats_path, wholetext=True).collect())
    try:
        stats = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{stats_path!r} is not valid JSON: {exc}") from exc
    data = InputConfig(path=cfg.path.rstrip("/") + "/data", text_column=cfg.text_column,
                       fallback_text_column=cfg.fallback_text_column, id_column=cfg.id_column,
                       input_format="parquet")
    return data, stats


def run_pack(cfg: PackConfig, spark: SparkSession | None = None) -> PackResult:
    from pipelines.spark_session import get_spark

    # Before Spark starts: the paths, and a given tokenizer file with its special tokens.
    check_paths(cfg.input.path, cfg.output, cfg.overwrite)
    given = load_tokenizer_file(cfg.tokenizer) if cfg.tokenizer.path else None
    spark = spark or get_spark(cfg.spark)
    input_cfg, dedup_stats = resolve_input(spark, cfg.input)
    corpus = read_corpus(spark, input_cfg)  # raises InputError before anything is written
    out = OutputDir(spark, _absolute(cfg.output), cfg.overwrite)
    try:
        manifest, timings = _run(spark, cfg, corpus, input_cfg, dedup_stats, out, given)
        out.delete(out.path("_work"))
        out.publish()
    except BaseException:
        out.abandon()
        raise
    return PackResult(out.final, manifest, timings)


def _tokenizer(cfg: PackConfig, corpus, given: TokenizerInfo | None) -> TokenizerInfo:
    return given or train_tokenizer(corpus.documents, corpus.text_column, cfg.tokenizer)


def _tokenize(documents: DataFrame, text_column: str, spec: StreamSpec, token_dtype: str) -> DataFrame:
    np_dtype = ShardSpec.numpy_dtype(token_dtype)

    def run(batches):
        # Spark runs one task per core; a tokenizer thread pool inside each task only oversubscribes
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        for batch in batches:
            yield ids_as_binary(tokenize_batch(batch.column(0), spec), np_dtype)

    return documents.select(F.col(text_column)).mapInArrow(run, STREAMS)


def shard_count(cfg: PackConfig, stream_tokens: int, documents: int, token_bytes: int) -> int:
    if cfg.num_shards is not None:
        return cfg.num_shards
    payload = stream_tokens * (token_bytes + 4)
    return max(1, min(max(documents, 1), math.ceil(payload / cfg.target_shard_bytes)))


def _run(spark: SparkSession, cfg: PackConfig, corpus, input_cfg: InputConfig, dedup_stats: dict | None,
         out: OutputDir, given: TokenizerInfo | None) -> tuple[dict, dict]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tok = _tokenizer(cfg, corpus, given)
    for note in tok.notes:
        log.warning(note)
    out.write_text("tokenizer.json", tok.json)
    timings["tokenizer"] = time.perf_counter() - t0
    token_dtype = token_dtype_for(tok.vocab_size)

    t0 = time.perf_counter()
    spec = StreamSpec(tok.json, tok.eos_id, tok.bos_id, cfg.max_doc_tokens)
    work = out.path("_work", "tokens")
    (_tokenize(corpus.documents, corpus.text_column, spec, token_dtype)
     .write.mode("overwrite").option("compression", "none").parquet(work))
    tokenized = spark.read.parquet(work)
    size = F.col("n_stream")
    counts = tokenized.agg(
        F.count(F.lit(1)).alias("input_documents"),
        F.sum((F.col("status") == STATUS_NULL).cast("long")).alias("null_text"),
        F.sum((F.col("status") == STATUS_EMPTY).cast("long")).alias("empty_text"),
        F.sum((F.col("status") == STATUS_OK).cast("long")).alias("documents"),
        F.sum("n_content").alias("content_tokens"),
        F.sum("n_dropped").alias("tokens_dropped"),
        F.sum(size).alias("stream_tokens"),
        F.sum((size > cfg.seq_len).cast("long")).alias("documents_split"),
        F.max(size).alias("longest_document"),
    ).first().asDict()
    counts = {k: int(v or 0) for k, v in counts.items()}
    conform(corpus.rejected, REJECTED, "rejected").write.parquet(out.path("rejected"))
    rejected = spark.read.schema(REJECTED).parquet(out.path("rejected")).count()
    timings["tokenize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_shards = shard_count(cfg, counts["stream_tokens"], counts["documents"], 2 if token_dtype == "uint16" else 4)
    shard_spec = ShardSpec(staging=out.staging, seq_len=cfg.seq_len, pad_id=tok.pad_id,
                           token_dtype=token_dtype, method=cfg.packing, formats=tuple(cfg.formats),
                           shuffle_rows=cfg.shuffle_rows, seed=cfg.seed,
                           compression=cfg.parquet_compression, row_group_rows=cfg.parquet_row_group_rows)
    docs = (tokenized.filter(F.col("status") == STATUS_OK).select("key_hi", "key_lo", "ids")
            .repartition(n_shards, "key_hi").sortWithinPartitions("key_hi", "key_lo"))
    summaries = [r.asDict() for r in docs.mapInArrow(pack_partition_fn(shard_spec), SHARD_SUMMARY).collect()]
    by_shard = {s["shard"]: s for s in summaries}
    if len(by_shard) != len(summaries):
        raise RuntimeError("two packing tasks reported the same shard")
    for index in range(n_shards):  # partitions that received no documents
        if index not in by_shard:
            by_shard[index] = write_shard(index, empty_rows(shard_spec), shard_spec, "driver")
    timings["pack"] = time.perf_counter() - t0

    manifest = build_manifest(cfg, tok, token_dtype, [by_shard[i] for i in range(n_shards)], counts,
                              rejected, corpus, input_cfg.path, dedup_stats)
    validate_manifest(manifest)
    if manifest["totals"]["tokens"] != counts["stream_tokens"]:
        raise RuntimeError(f"packed {manifest['totals']['tokens']} tokens but tokenized "
                           f"{counts['stream_tokens']}: a shard is missing or duplicated")
    out.write_text("manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest, timings


def build_manifest(cfg: PackConfig, tok: TokenizerInfo, token_dtype: str, shards: list[dict],
                   counts: dict, rejected: int, corpus, read_path: str, dedup_stats: dict | None) -> dict:
    entries = {fmt: [{"file": shard_file(fmt, s["shard"]), "rows": s["rows"], "tokens": s["tokens"],
                      "padding_tokens": s["padding_tokens"], "documents": s["documents"],
                      "sha256": s[f"{fmt}_sha256"], "bytes": s[f"{fmt}_bytes"]} for s in shards]
               for fmt in cfg.formats}
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
              "text_column": corpus.text_column, "notes": list(corpus.notes)}
    return {
        "format_version": FORMAT_VERSION,
        "seq_len": cfg.seq_len,
        "vocab_size": tok.vocab_size,
        "token_dtype": token_dtype,
        "pad_id": tok.pad_id,
        "eos_id": tok.eos_id,
        "bos_id": tok.bos_id,
        "tokenizer": "tokenizer.json",
        "tokenizer_sha256": tok.sha256,
        "tokenizer_source": ({"file": cfg.tokenizer.path} if cfg.tokenizer.path else
                             {"trained": True, "vocab_size_requested": cfg.tokenizer.vocab_size,
                              "min_frequency": cfg.tokenizer.min_frequency,
                              "trained_on_bytes": tok.trained_on_bytes}),
        "packing": cfg.packing,
        "shuffle_rows": cfg.shuffle_rows,
        "seed": cfg.seed,
        "shards": entries,
        "totals": totals,
        "stats": stats,
        "source": source,
        "dedup_stats": dedup_stats,
    }
