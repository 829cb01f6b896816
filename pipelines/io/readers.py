"""Read a corpus (Parquet, JSON Lines, or an HF ``datasets`` ``save_to_disk`` folder).

Every input record ends up in exactly one of two DataFrames: ``documents`` (all input columns,
the text column as a string) or ``rejected`` (schema ``schemas.tables.REJECTED``: the raw
record and why it could not be read). Whole-input problems — a missing path, a missing text
column, a text column of a non-text type — raise :class:`InputError` on the driver before any
task runs, naming what was found.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.ipc as ipc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import BinaryType, StringType, StructField, StructType

from pipelines.config import InputConfig
from pipelines.errors import UserError
from schemas.tables import REJECTED

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")


class InputError(UserError, ValueError):
    """The input as a whole cannot be processed; the message says why and what exists."""


@dataclass
class Corpus:
    documents: DataFrame
    rejected: DataFrame
    text_column: str
    input_format: str
    notes: list[str] = field(default_factory=list)


def detect_format(path: str) -> str:
    """``parquet``, ``json`` or ``hf`` from the path's shape (globs allowed)."""
    local = path.removeprefix("file://")
    if "://" not in local:
        if os.path.isdir(local):
            if os.path.exists(os.path.join(local, "dataset_info.json")) or os.path.exists(
                    os.path.join(local, "state.json")):
                return "hf"
            names = [n for n in os.listdir(local) if not n.startswith(("_", "."))]
            if names and all(n.endswith(JSON_SUFFIXES) for n in names):
                return "json"
            return "parquet"
        matches = glob.glob(local)
        if not matches:
            raise InputError(f"input path {path!r} does not exist")
        if all(m.endswith(JSON_SUFFIXES) for m in matches):
            return "json"
        return "parquet"
    return "json" if path.endswith(JSON_SUFFIXES) else "parquet"


def read_corpus(spark: SparkSession, cfg: InputConfig) -> Corpus:
    fmt = detect_format(cfg.path) if cfg.input_format == "auto" else cfg.input_format
    if fmt == "parquet":
        frame = spark.read.parquet(cfg.path)
        return _typed_text_column(frame, _empty_rejected(spark), cfg, fmt)
    if fmt == "hf":
        return _typed_text_column(_read_hf_saved(spark, cfg.path), _empty_rejected(spark), cfg, fmt)
    if fmt == "json":
        return _read_json_lines(spark, cfg)
    raise InputError(f"unknown input format {fmt!r} (expected parquet, json or hf)")


def _empty_rejected(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame([], REJECTED)


def as_rejected(frame: DataFrame, reason: str) -> DataFrame:
    """Rows of ``frame`` in the ``REJECTED`` schema, every column kept as JSON."""
    return frame.select(F.lit(None).cast("string").alias("source"), F.lit(reason).alias("reason"),
                        F.to_json(F.struct(*[F.col(f"`{c}`") for c in frame.columns])).cast("binary")
                        .alias("record"))


def _choose_text_column(columns: list[str], cfg: InputConfig, notes: list[str]) -> str:
    if cfg.text_column in columns:
        return cfg.text_column
    if cfg.fallback_text_column in columns:
        notes.append(f"text column {cfg.text_column!r} not found; using {cfg.fallback_text_column!r}")
        return cfg.fallback_text_column
    raise InputError(f"text column {cfg.text_column!r} not found; the input has columns "
                     f"{sorted(columns)} (choose one with --text-column)")


def _typed_text_column(frame: DataFrame, rejected: DataFrame, cfg: InputConfig, fmt: str,
                       notes: list[str] | None = None) -> Corpus:
    """Check the text column's type; binary text is decoded, undecodable rows are rejected."""
    notes = list(notes or [])
    text = _choose_text_column(frame.columns, cfg, notes)
    dtype = frame.schema[text].dataType
    if isinstance(dtype, BinaryType):
        as_string = F.col(text).cast("string")
        valid = F.col(text).isNull() | F.expr(f"is_valid_utf8(cast(`{text}` as string))")
        bad = frame.filter(~valid).select(
            F.input_file_name().alias("source"), F.lit("invalid UTF-8 in text column").alias("reason"),
            F.to_json(F.struct(*[F.base64(F.col(c)).alias(c) if c == text else F.col(c)
                                 for c in frame.columns])).cast("binary").alias("record"))
        rejected = rejected.unionByName(bad)
        frame = frame.filter(valid).withColumn(text, as_string)
        notes.append(f"text column {text!r} is binary; decoded as UTF-8")
    elif not isinstance(dtype, StringType):
        raise InputError(f"text column {text!r} has type {dtype.simpleString()}; expected a string")
    return Corpus(frame, rejected, text, fmt, notes)


def _read_json_lines(spark: SparkSession, cfg: InputConfig) -> Corpus:
    """JSON Lines, validated line by line in the JVM.

    Spark's JSON reader stringifies a number or object found where a string is expected, so
    types are checked on a VARIANT parse of each line instead: invalid UTF-8, malformed JSON,
    a non-object line and a non-string text value are each rejected with their own reason.
    """
    lines = spark.read.text(cfg.path).select(F.input_file_name().alias("source"), F.col("value").alias("line"))
    lines = lines.filter(F.trim(F.col("line")) != "")
    parsed = lines.withColumn("_variant", F.expr("try_parse_json(line)"))
    columns = _json_columns(spark, cfg.path)
    notes: list[str] = []
    text = _choose_text_column([f.name for f in columns.fields], cfg, notes)
    schema = StructType([StructField(f.name, StringType() if f.name == text else f.dataType, True)
                         for f in columns.fields])
    text_type = F.expr(f"schema_of_variant(variant_get(_variant, '$[\"{_escape(text)}\"]'))")
    reason = (F.when(~F.expr("is_valid_utf8(line)"), F.lit("invalid UTF-8"))
              .when(F.col("_variant").isNull(), F.lit("malformed JSON"))
              .when(~F.expr("schema_of_variant(_variant)").startswith("OBJECT"),
                    F.lit("JSON value is not an object"))
              .when(text_type.isNotNull() & ~text_type.isin("STRING", "VOID"),
                    F.concat(F.lit(f"text field {text!r} is "), text_type, F.lit(", not a string"))))
    classified = parsed.withColumn("reason", reason).drop("_variant")
    rejected = classified.filter(F.col("reason").isNotNull()).select(
        "source", "reason", F.col("line").cast("binary").alias("record"))
    documents = (classified.filter(F.col("reason").isNull())
                 .select(F.from_json("line", schema).alias("_row")).select("_row.*"))
    return Corpus(documents, rejected, text, "json", notes)


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")


def _json_columns(spark: SparkSession, path: str) -> StructType:
    """Columns of a JSON Lines corpus, inferred by Spark with malformed lines left out."""
    schema = (spark.read.option("mode", "DROPMALFORMED").option("samplingRatio", 1.0)
              .json(path).schema)
    if not schema.fields:
        raise InputError(f"no JSON objects found in {path!r}")
    return schema


def _read_hf_saved(spark: SparkSession, path: str) -> DataFrame:
    """A ``datasets.Dataset.save_to_disk`` folder: Arrow IPC stream files, read on executors."""
    files = sorted(glob.glob(os.path.join(path, "*.arrow")))
    if not files:
        raise InputError(f"{path!r} looks like a saved HF dataset but holds no .arrow files")
    with open(os.path.join(path, "state.json")) as fh:
        state = json.load(fh)
    listed = [os.path.join(path, f["filename"]) for f in state.get("_data_files", [])]
    files = listed or files
    with pa.memory_map(files[0]) as source:
        arrow_schema = ipc.open_stream(source).schema
    spark_schema = from_arrow_schema(arrow_schema)

    def read_files(batches):
        for batch in batches:
            for name in batch.column("path").to_pylist():
                with pa.memory_map(name) as source:
                    yield from ipc.open_stream(source)

    paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(len(files))
    return paths.mapInArrow(read_files, spark_schema)
