"""Read a corpus (Parquet, JSON Lines, or an HF ``datasets`` ``save_to_disk`` folder).

Every input record ends up in exactly one of two DataFrames: ``documents`` (all input columns,
the text column as a string) or ``rejected`` (schema ``schemas.rejected.REJECTED``: the raw
record and why it could not be read). Whole-input problems — a missing path, no input files, a
missing text column, a text column of a non-text type, files Spark cannot read as the format —
raise :class:`InputError` on the driver before any task runs, naming what was found.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.ipc as ipc
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import BinaryType, StringType, StructField, StructType, _parse_datatype_json_string

from pipelines.arrow_tasks import map_in_arrow
from pipelines.config import InputConfig
from pipelines.errors import InputError, one_line
from pipelines.io import uri
from pipelines.io.hadoop import HadoopFs
from pipelines.io.paths import GLOB_CHARS, input_files

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
# Parquet footers read to learn the input's row size: this many files, evenly spread over the input.
FOOTER_SAMPLE_FILES = 16


@dataclass
class Corpus:
    documents: DataFrame
    rejected: DataFrame
    text_column: str
    input_format: str
    notes: list[str] = field(default_factory=list)
    # Parquet: the largest average row of the sampled row groups, in uncompressed bytes (what a
    # reader batch of n rows holds is about n times this); None for other formats
    row_bytes: int | None = None


def detect_format(fs: HadoopFs, path: str, files: list[str] | None) -> str:
    """``parquet``, ``json`` or ``hf`` from the input's shape and its files' names (``input_files``)."""
    root = path.rstrip("/")
    if (not GLOB_CHARS & set(path) and fs.is_dir(root)
            and (fs.exists(f"{root}/dataset_info.json") or fs.exists(f"{root}/state.json"))):
        return "hf"
    names = files if files else [path]
    return "json" if all(n.endswith(JSON_SUFFIXES) for n in names) else "parquet"


def read_corpus(spark: SparkSession, cfg: InputConfig) -> Corpus:
    files = input_files(cfg.path, spark)  # InputError: missing, a glob matching nothing, no data files
    fs = HadoopFs(spark)
    fmt = detect_format(fs, cfg.path, files) if cfg.input_format == "auto" else cfg.input_format
    if fmt == "parquet":
        frame = _resolved(lambda: spark.read.parquet(cfg.path), cfg.path, fmt)
        corpus = _typed_text_column(frame, as_rejected(frame.limit(0), ""), cfg, fmt)
        corpus.row_bytes = _resolved(lambda: parquet_row_bytes(spark, files), cfg.path, fmt)
        return corpus
    if fmt == "hf":
        frame = _read_hf_saved(spark, fs, cfg.path)
        return _typed_text_column(frame, as_rejected(frame.limit(0), ""), cfg, fmt)
    if fmt == "json":
        return _read_json_lines(spark, cfg)
    raise InputError(f"unknown input format {fmt!r} (expected parquet, json or hf)")


def parquet_row_bytes(spark: SparkSession, files: list[str]) -> int | None:
    """The largest average row size (all columns, uncompressed) among the row groups of up to
    ``FOOTER_SAMPLE_FILES`` of ``files``, evenly spaced; None if they hold no rows.

    Read from the footers through Hadoop's Parquet reader, so any filesystem Spark reads works.
    Row sizes within a row group are not recorded; a reader batch is never larger than its row group.
    """
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    # classes by full name, one py4j call each (HadoopFs says why)
    path, input_file, file_reader = (getattr(jvm, name) for name in (
        "org.apache.hadoop.fs.Path", "org.apache.parquet.hadoop.util.HadoopInputFile",
        "org.apache.parquet.hadoop.ParquetFileReader"))
    largest = 0
    for name in files[::max(1, len(files) // FOOTER_SAMPLE_FILES)][:FOOTER_SAMPLE_FILES]:
        reader = file_reader.open(input_file.fromPath(path(name), conf))
        try:
            for block in reader.getFooter().getBlocks():
                if block.getRowCount():
                    largest = max(largest, math.ceil(block.getTotalByteSize() / block.getRowCount()))
        finally:
            reader.close()
    return largest or None


def _resolved(read: Callable[[], object], path: str, fmt: str):
    """``read()``, whose failure while Spark resolves the files on the driver is the input's problem.

    Files that are not of the format, or hold no schema, fail here, before any task: one line
    with Spark's innermost reason instead of a Java stack trace.
    """
    try:
        return read()
    except (AnalysisException, Py4JJavaError) as err:
        raise InputError(f"cannot read {path!r} as {fmt}: {one_line(_innermost(err))}") from err


def _innermost(err: Exception) -> str:
    if isinstance(err, AnalysisException):
        return err.getMessage()
    cause = err.java_exception
    while cause.getCause() is not None:
        cause = cause.getCause()
    return cause.toString()


def as_rejected(frame: DataFrame, reason: str) -> DataFrame:
    """Rows of ``frame`` in the ``REJECTED`` schema, every column kept as JSON (of
    ``frame.limit(0)``: no rows, in a plan the JVM runs alone, no Python worker started)."""
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


# Spark's JSON parser (Jackson) refuses a string value longer than this; such a line cannot be read.
MAX_JSON_STRING_CHARS = 20_000_000
_AFTER_VALUE = "malformed JSON: text after the first value"
# Why a line ``l`` is not one JSON value, given ``a``, its parse as ``[l]`` (CASE branches, see
# _line_reasons). ``[l]`` parsing as a one-element array leaves one way for text to follow the
# value: a ``]`` in the line that closed the array early (``{..}] junk``); then ``{"":l}`` cannot
# parse (an object's value must be followed by ``,`` or ``}``), so that second parse, run only
# for lines holding a ``]``, completes the check. The costly branches run only for bad lines.
_SYNTAX_REASONS = f"""
    WHEN NOT is_valid_utf8(l) THEN 'invalid UTF-8'
    WHEN a IS NULL AND length(l) > {MAX_JSON_STRING_CHARS} THEN
        'malformed JSON, or a string over {MAX_JSON_STRING_CHARS:,} characters (the limit of Spark''s JSON parser)'
    WHEN a IS NULL AND try_parse_json(l) IS NOT NULL THEN '{_AFTER_VALUE}'
    WHEN a IS NULL AND size(json_object_keys(l)) > size(array_distinct(json_object_keys(l))) THEN
        concat('malformed JSON: repeated key ''', element_at(transform(array(json_object_keys(l)),
               k -> element_at(filter(k, (x, i) -> array_position(k, x) != i + 1), 1)), 1), '''')
    WHEN a IS NULL THEN 'malformed JSON'
    WHEN variant_get(a, '$[1]') IS NOT NULL THEN '{_AFTER_VALUE}'
    WHEN instr(l, ']') > 0 AND try_parse_json(concat('{{"":', l, '}}')) IS NULL THEN '{_AFTER_VALUE}'
    WHEN NOT startswith(schema_of_variant(a), 'ARRAY<OBJECT') THEN 'JSON value is not an object'"""


def _line_reasons(branches: str) -> Column:
    """Why ``line`` is rejected (the first matching branch), or null.

    The line and its VARIANT parse are bound to lambda variables (``l``, ``a``): a column
    computed below and referenced in several branches would be inlined by the optimizer into
    each of them (the filter on the reason is pushed down), parsing every line several times.
    """
    return F.expr(f"element_at(transform(array(line), l -> element_at(transform("
                  f"array(try_parse_json(concat('[', l, ']'))), a -> CASE {branches} END), 1)), 1)")


def _read_json_lines(spark: SparkSession, cfg: InputConfig) -> Corpus:
    """JSON Lines, validated line by line in the JVM; each line is one document or one rejected record.

    Spark's JSON reader stringifies a number or object found where a string is expected, keeps
    the last of repeated keys, reads only the first value of ``{"a":1} garbage`` and fails the
    whole column inference on one line with a repeated key. So each line is parsed as ``[line]``
    into a VARIANT, which rejects repeated keys and, with one more check, anything after the
    first value (``_SYNTAX_REASONS``); the columns are inferred (:func:`_json_columns`); and
    only then are the objects read. Rejected with their own reason: invalid UTF-8, malformed
    JSON (a repeated key and text after the value named), a string over the parser's limit, a
    non-object line, a key differing only in case from another (Spark's columns ignore case), a
    non-string text.
    """
    raw = F.col("value")
    lines = spark.read.text(cfg.path).select(  # a byte-order mark (Windows editors) is not part of the JSON
        F.input_file_name().alias("source"), raw,
        F.when(raw.startswith("\ufeff"), F.substring(raw, 2, 2**31 - 1)).otherwise(raw).alias("line"))
    lines = lines.filter(F.trim(F.col("line")) != "")
    well_formed = lines.filter(_line_reasons(_SYNTAX_REASONS).isNull()).select("line")
    notes: list[str] = []
    columns = _json_columns(spark, cfg.path, well_formed, notes)
    text = _choose_text_column([f.name for f in columns.fields], cfg, notes)
    columns, case_variants = _case_variants(columns, (text,))
    schema = StructType([StructField(f.name, StringType() if f.name == text else f.dataType, True)
                         for f in columns.fields])
    branches = _SYNTAX_REASONS
    if case_variants:  # per-line keys only for an input that has such keys
        variant_keys = "array_intersect(json_object_keys(l), array({}))".format(
            ", ".join(f"'{_escape(k)}'" for k in case_variants))
        branches += (f"\n    WHEN size({variant_keys}) > 0 THEN concat('key ''', element_at({variant_keys}, 1), "
                     "''' differs only in case from another key (columns ignore case)')")
    text_type = f"schema_of_variant(variant_get(a, '$[0][\"{_escape(text)}\"]'))"
    branches += (f"\n    WHEN {text_type} NOT IN ('STRING', 'VOID') THEN "
                 f"concat('{_escape(f'text field {text!r} is ')}', {text_type}, ', not a string')")
    classified = lines.withColumn("reason", _line_reasons(branches))
    rejected = classified.filter(F.col("reason").isNotNull()).select(
        "source", "reason", F.col("value").cast("binary").alias("record"))
    documents = (classified.filter(F.col("reason").isNull())
                 .select(F.from_json("line", schema).alias("_row")).select("_row.*"))
    return Corpus(documents, rejected, text, "json", notes)


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")


def _json_columns(spark: SparkSession, path: str, well_formed: DataFrame, notes: list[str]) -> StructType:
    """Columns of a JSON Lines input as Spark's JSON reader infers them, every line sampled.

    Inferred case-sensitively: keys that differ only in case come out as separate columns
    (:func:`_case_variants` decides), where Spark would merge them into one column (losing the
    values of one spelling) or, within one object, fail. The reader's own pass over the files
    is the fast way; only if one line repeats a key, which fails that inference for the whole
    input, are the columns inferred again from the ``well_formed`` lines (a VARIANT parse more).
    """
    reader = spark.read.option("mode", "DROPMALFORMED").option("samplingRatio", 1.0)  # no _corrupt_record
    previous = spark.conf.get("spark.sql.caseSensitive")
    spark.conf.set("spark.sql.caseSensitive", "true")
    try:
        try:
            schema = reader.json(path).schema
        except AnalysisException as err:
            if err.getCondition() != "COLUMN_ALREADY_EXISTS":
                raise
            encoders = getattr(spark.sparkContext._jvm, "org.apache.spark.sql.Encoders")
            strings = getattr(well_formed._jdf, "as")(encoders.STRING())
            schema = _parse_datatype_json_string(reader._jreader.json(strings).schema().json())
            notes.append("a line repeats a key (Spark's COLUMN_ALREADY_EXISTS warning); such lines are "
                         "rejected and the columns were inferred from the well-formed lines")
    finally:
        spark.conf.set("spark.sql.caseSensitive", previous)
    if not schema.fields:
        raise InputError(f"no JSON objects found in {path!r}")
    return schema


def _case_variants(columns: StructType, preferred: tuple[str, ...]) -> tuple[StructType, list[str]]:
    """``(columns, variant spellings)``: of keys equal but for case one is the column, the others variants.

    The column is the preferred spelling (the text column) if it is one of them, else the first
    in Spark's order; lines holding a variant spelling are rejected rather than merged.
    """
    groups: dict[str, list[str]] = {}
    for f in columns.fields:
        groups.setdefault(f.name.lower(), []).append(f.name)
    chosen = {key: next((n for n in names if n in preferred), names[0]) for key, names in groups.items()}
    kept = StructType([f for f in columns.fields if chosen[f.name.lower()] == f.name])
    return kept, [f.name for f in columns.fields if chosen[f.name.lower()] != f.name]


def _read_hf_saved(spark: SparkSession, fs: HadoopFs, path: str) -> DataFrame:
    """A ``datasets.Dataset.save_to_disk`` folder: Arrow IPC stream files, read on executors."""
    root = path.rstrip("/")
    state = json.loads(fs.read_text(f"{root}/state.json") or "{}")
    listed = [f["filename"] for f in state.get("_data_files", [])]
    names = listed or [f.path.rsplit("/", 1)[-1] for f in fs.files(f"{root}/*.arrow")]
    if not names:
        raise InputError(f"{path!r} looks like a saved HF dataset but holds no .arrow files")
    files = [uri.join(root, name) for name in names]
    with uri.open_input(files[0]) as source:
        arrow_schema = ipc.open_stream(source).schema
    spark_schema = from_arrow_schema(arrow_schema)

    def read_files(batches):
        for batch in batches:
            for name in batch.column("path").to_pylist():
                with uri.open_input(name) as source:
                    yield from ipc.open_stream(source)

    paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(len(files))
    return map_in_arrow(paths, read_files, spark_schema)
