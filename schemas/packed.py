"""Schemas of the pack job: shard tables, its intermediate Spark tables and ``manifest.json``.

A packed output directory::

    DIR/parquet/part-NNNNN.parquet     one row per packed sequence (``shard_schema``)
    DIR/tfrecord/part-NNNNN.tfrecord   the same rows in the same order, as tf.train.Example
    DIR/megatron/part-NNNNN.bin|.idx   the shard's documents unpacked, Megatron-LM's indexed dataset
    DIR/documents/                     one row per input document: doc_id, source, status, tokens
    DIR/tokenizer.json                 the tokenizer that produced the ids
    DIR/manifest.json                  validated by :func:`validate_manifest`
    DIR/_SUCCESS

Every row holds exactly ``seq_len`` tokens. ``segment_ids`` numbers the document pieces of
the row 1..k in order (0 marks padding, which sits at the end); ``positions`` counts 0.. within
each piece. Padding has ``input_ids == pad_id``, ``segment_ids == 0``, ``positions == 0``.
``doc_ids`` lists the document id of each piece (``doc_ids[k - 1]`` for segment ``k``).

Feature names (``--feature-names``, recorded in the manifest's ``features``) are those the
trainer reads, over the same rows: ``default`` (above), ``seqio`` (``targets``,
``targets_segment_ids``, ``targets_positions``: seqio's packed LM features, shifted by its
feature converter) and ``maxtext`` (``inputs``/``targets`` with ``*_segmentation`` and
``*_position``: MaxText's packed batch after its shift, so ``targets`` is the next token of the
same segment and ``targets_segmentation`` is 0 where a segment has no next token).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from pyspark.sql.types import (ArrayType, BooleanType, IntegerType, LongType, StringType,
                               StructField, StructType)

from pipelines.config import FORMATS, MAX_SEQ_LEN, MEGATRON, PackingMethod
from pipelines.errors import alternatives
from pipelines.io import uri

FORMAT_VERSION = 2  # 2: doc_ids in every row, feature names, Megatron indexed datasets
FEATURES = ("input_ids", "segment_ids", "positions")  # the fields every packed row carries
DOC_IDS = "doc_ids"
DOCUMENTS_DIR = "documents"
SHARD_SUFFIX = {"parquet": ".parquet", "tfrecord": ".tfrecord", MEGATRON: ".bin"}
# column -> field, in column order. MaxText's targets_* are derived (``udfs.packing.next_token_targets``).
FEATURE_NAMES = {
    "default": {"input_ids": "input_ids", "segment_ids": "segment_ids", "positions": "positions"},
    "seqio": {"targets": "input_ids", "targets_segment_ids": "segment_ids", "targets_positions": "positions"},
    "maxtext": {"inputs": "input_ids", "inputs_segmentation": "segment_ids", "inputs_position": "positions",
                "targets": "target_ids", "targets_segmentation": "target_segment_ids",
                "targets_position": "positions"},
}
TOKEN_FIELDS = ("input_ids", "target_ids")  # in the token dtype; every other field is uint16
UINT16_VOCAB = 65536


def token_dtype_for(vocab_size: int) -> str:
    """``uint16`` when every id fits (vocab_size <= 65536), else ``int32``."""
    return "uint16" if vocab_size <= UINT16_VOCAB else "int32"


def shard_file(fmt: str, index: int) -> str:
    """Deterministic shard name relative to the output dir: ``parquet/part-00007.parquet``."""
    return f"{fmt}/part-{index:05d}{SHARD_SUFFIX[fmt]}"


def megatron_index_file(index: int) -> str:
    """The ``.idx`` beside a Megatron shard's ``.bin`` (the pair's path prefix is their common stem)."""
    return shard_file(MEGATRON, index).removesuffix(".bin") + ".idx"


def shard_schema(token_dtype: str, feature_names: str = "default") -> pa.Schema:
    """Arrow schema of a Parquet shard: the scheme's columns, then ``doc_ids``."""
    tok = pa.uint16() if token_dtype == "uint16" else pa.int32()
    return pa.schema([pa.field(column, pa.list_(tok if field in TOKEN_FIELDS else pa.uint16()), nullable=False)
                      for column, field in FEATURE_NAMES[feature_names].items()]
                     + [pa.field(DOC_IDS, pa.list_(pa.int64()), nullable=False)])


def feature_columns(manifest: dict) -> dict[str, str]:
    """``{field: column}`` for the fields of ``FEATURES`` in a manifest's shards (the first column of each)."""
    columns = manifest.get("features", {}).get("columns") or FEATURE_NAMES["default"]
    out: dict[str, str] = {}
    for column, field in columns.items():
        out.setdefault(field, column)
    return {field: out[field] for field in FEATURES}


# One row per input document after tokenization; in staging (``_work``) the ``ids`` column
# travels as ``binary`` of the token dtype (``STREAMS`` in ``pipelines/pack/pipeline.py``).
# ``status``: 0 tokenized, 1 null text, 2 empty text (no tokens). ``key_hi``/``key_lo`` are two
# xxHash64 digests of the UTF-8 text: the deterministic sort and partition key.
TOKENIZED = StructType([
    StructField("key_hi", LongType(), False),
    StructField("key_lo", LongType(), False),
    StructField("status", IntegerType(), False),
    StructField("n_content", LongType(), False),   # tokens the tokenizer produced
    StructField("n_dropped", LongType(), False),   # content tokens cut by --max-doc-tokens
    StructField("n_stream", LongType(), False),    # len(ids): counted without reading ids
    StructField("ids", ArrayType(IntegerType(), False), False),  # BOS? + content + EOS
])
# Carried beside each tokenized document: where it came from. ``doc_id`` is the dedup job's id
# (its ``doc_id`` column when the input is a dedup output, else the same row hash the dedup job
# gives a row that is not repeated, ``pipelines.dedup.ids``); ``source`` is ``--source-column``, the
# input file, or for a dedup output the corpus the dedup job read.
PROVENANCE = [StructField("doc_id", LongType(), False), StructField("source", StringType(), True)]
# ``DIR/documents/``: one row per input document, so a training row's ``doc_ids`` lead back to
# the document, its source and what became of it (``status`` as in ``TOKENIZED``).
DOCUMENTS = StructType([*PROVENANCE, StructField("status", IntegerType(), False),
                        StructField("tokens", LongType(), False)])

# What each packing task returns to the driver: one row per shard (small).
SHARD_SUMMARY = StructType([
    StructField("shard", IntegerType(), False),
    StructField("rows", LongType(), False),
    StructField("tokens", LongType(), False),
    StructField("padding_tokens", LongType(), False),
    StructField("documents", LongType(), False),
    StructField("documents_split", LongType(), False),
    StructField("pieces", LongType(), False),
    StructField("parquet_sha256", StringType(), True),
    StructField("parquet_bytes", LongType(), True),
    StructField("tfrecord_sha256", StringType(), True),
    StructField("tfrecord_bytes", LongType(), True),
    StructField("megatron_sha256", StringType(), True),
    StructField("megatron_bytes", LongType(), True),
    StructField("megatron_idx_sha256", StringType(), True),
    StructField("megatron_idx_bytes", LongType(), True),
    StructField("empty", BooleanType(), False),
])


# ----------------------------------------------------------------------------------------
# manifest.json

class ManifestError(ValueError):
    pass


_INT = (int,)
_NUM = (int, float)
SHARD_KEYS = {"file": str, "rows": _INT, "tokens": _INT, "padding_tokens": _INT,
              "documents": _INT, "sha256": str, "bytes": _INT}
MEGATRON_FILE_KEYS = {"prefix": str, "file": str, "idx_file": str, "documents": _INT, "tokens": _INT,
                      "sha256": str, "bytes": _INT, "idx_sha256": str, "idx_bytes": _INT}
TOTAL_KEYS = {"rows": _INT, "tokens": _INT, "padding_tokens": _INT, "documents": _INT,
              "shards": _INT}
STATS_KEYS = {"fill_rate": _NUM, "documents": _INT, "documents_split": _INT,
              "fraction_split": _NUM, "tokens_dropped": _INT}
TOP_KEYS = {"format_version": _INT, "seq_len": _INT, "vocab_size": _INT, "token_dtype": str,
            "pad_id": _INT, "eos_id": _INT, "tokenizer": str, "tokenizer_sha256": str,
            "packing": str, "shards": dict, "totals": dict, "stats": dict, "source": dict}


def _check(obj: dict, spec: dict, where: str, problems: list[str]) -> None:
    for key, types in spec.items():
        if key not in obj:
            problems.append(f"{where}: missing {key!r}")
            continue
        value = obj[key]
        types = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) or not isinstance(value, types):
            problems.append(f"{where}.{key}: expected {'/'.join(t.__name__ for t in types)}, "
                            f"got {type(value).__name__}")
        elif isinstance(value, (int, float)) and value < 0:
            problems.append(f"{where}.{key}: must not be negative")


def validate_manifest(manifest: Any) -> dict:
    """Check structure, types and internal consistency; raise :class:`ManifestError` listing all problems."""
    problems: list[str] = []
    if not isinstance(manifest, dict):
        raise ManifestError("manifest must be a JSON object")
    _check(manifest, TOP_KEYS, "manifest", problems)
    if problems:
        raise ManifestError("; ".join(problems))
    if manifest["format_version"] != FORMAT_VERSION:
        problems.append(f"format_version {manifest['format_version']} is not {FORMAT_VERSION}")
    seq_len, vocab = manifest["seq_len"], manifest["vocab_size"]
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        problems.append(f"seq_len {seq_len} outside [1, {MAX_SEQ_LEN}]")
    if manifest["token_dtype"] != token_dtype_for(vocab):
        problems.append(f"token_dtype {manifest['token_dtype']!r} does not suit vocab_size {vocab}")
    for key in ("pad_id", "eos_id"):
        if not 0 <= manifest[key] < vocab:
            problems.append(f"{key} {manifest[key]} outside the vocabulary")
    for key in ("bos_id", "mask_id", "cls_id", "sep_id"):  # optional: null, absent, or an id
        value = manifest.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab):
            problems.append(f"{key} {value!r} must be null or an id in the vocabulary")
    methods = [m.value for m in PackingMethod]
    if manifest["packing"] not in methods:
        problems.append(f"packing {manifest['packing']!r} is not {alternatives(methods)}")
    if len(manifest["tokenizer_sha256"]) != 64:
        problems.append("tokenizer_sha256 is not a hex sha256")
    shards = manifest["shards"]
    megatron = manifest.get(MEGATRON)
    if (not shards and megatron is None) or set(shards) - set(FORMATS):
        problems.append(f"shards must have keys among {FORMATS}, got {sorted(shards)}")
    _check_features(manifest.get("features"), problems)
    _check_megatron(megatron, manifest["totals"], problems)
    counts = {}
    for fmt, entries in shards.items():
        if not isinstance(entries, list):
            problems.append(f"shards.{fmt} must be a list")
            continue
        for i, entry in enumerate(entries):
            where = f"shards.{fmt}[{i}]"
            if not isinstance(entry, dict):
                problems.append(f"{where} must be an object")
                continue
            _check(entry, SHARD_KEYS, where, problems)
            if entry.get("file") != shard_file(fmt, i):
                problems.append(f"{where}.file is {entry.get('file')!r}, expected {shard_file(fmt, i)!r}")
            if all(isinstance(entry.get(k), int) for k in ("rows", "tokens", "padding_tokens")):
                if entry["tokens"] + entry["padding_tokens"] != entry["rows"] * seq_len:
                    problems.append(f"{where}: tokens + padding_tokens != rows * seq_len")
        counts[fmt] = [(e.get("rows"), e.get("tokens")) for e in entries if isinstance(e, dict)]
    if len({tuple(c) for c in counts.values()}) > 1:
        problems.append("parquet and tfrecord shards disagree on rows/tokens")
    totals = manifest["totals"]
    _check(totals, TOTAL_KEYS, "totals", problems)
    for fmt, entries in shards.items():
        if isinstance(entries, list) and all(isinstance(e, dict) for e in entries):
            for key in ("rows", "tokens", "padding_tokens", "documents"):
                if totals.get(key) != sum(e.get(key, 0) for e in entries):
                    problems.append(f"totals.{key} is not the sum over shards.{fmt}")
            if totals.get("shards") != len(entries):
                problems.append(f"totals.shards is not the number of shards.{fmt}")
    _check(manifest["stats"], STATS_KEYS, "stats", problems)
    fill = manifest["stats"].get("fill_rate")
    if isinstance(fill, (int, float)) and not 0.0 <= fill <= 1.0:
        problems.append("stats.fill_rate outside [0, 1]")
    dedup = manifest.get("dedup_stats")
    if dedup is not None and not isinstance(dedup, dict):
        problems.append("dedup_stats must be null or an object")
    if problems:
        raise ManifestError("invalid manifest: " + "; ".join(problems))
    return manifest


def _check_features(features: Any, problems: list[str]) -> None:
    if features is None:
        return
    if not isinstance(features, dict) or features.get("scheme") not in FEATURE_NAMES:
        problems.append(f"features.scheme must be one of {sorted(FEATURE_NAMES)}")
    elif features.get("columns") != FEATURE_NAMES[features["scheme"]] or features.get("doc_ids") != DOC_IDS:
        problems.append(f"features.columns do not match the {features['scheme']!r} scheme")


def _check_megatron(megatron: Any, totals: dict, problems: list[str]) -> None:
    """Megatron files hold every packed document once: their totals are the packed totals."""
    if megatron is None:
        return
    if not isinstance(megatron, dict) or not isinstance(megatron.get("files"), list):
        problems.append("megatron must be an object with a files list")
        return
    for i, entry in enumerate(megatron["files"]):
        where = f"megatron.files[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be an object")
            continue
        _check(entry, MEGATRON_FILE_KEYS, where, problems)
        if entry.get("file") != shard_file(MEGATRON, i) or entry.get("idx_file") != megatron_index_file(i):
            problems.append(f"{where}: files are not {shard_file(MEGATRON, i)!r} and {megatron_index_file(i)!r}")
    files = [e for e in megatron["files"] if isinstance(e, dict)]
    for key in ("documents", "tokens"):
        if megatron.get(key) != sum(e.get(key, 0) for e in files) or megatron.get(key) != totals.get(key):
            problems.append(f"megatron.{key} is not the sum over its files and the packed totals")


def manifest_file(path: str) -> str:
    """``manifest.json`` itself, given the file or the output directory (local path or URI)."""
    path = str(path).rstrip("/")
    return path if path.endswith(".json") else uri.join(path, "manifest.json")


def load_manifest(path: str) -> dict:
    """Read and validate ``manifest.json`` (``path`` may be the file or its output dir, local or a URI).

    An output without ``_SUCCESS`` beside its manifest is refused: the marker is written last,
    after every file is in place, so its absence means a publication that did not finish.
    Raises ``ManifestError`` (a ValueError) for a missing, unreadable, incomplete or invalid one.
    """
    file = manifest_file(path)
    root = uri.parent(file)
    if not uri.exists(uri.join(root, "_SUCCESS")):
        raise ManifestError(f"{root} has no _SUCCESS: the output is incomplete (its publication did not finish)")
    try:
        manifest = json.loads(uri.read_bytes(file))
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {file!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{file}: not valid JSON ({exc})") from None
    try:
        return validate_manifest(manifest)
    except ManifestError as exc:
        raise ManifestError(f"{file}: {exc}") from None
