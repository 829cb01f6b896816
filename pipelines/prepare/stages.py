"""When a stage may be skipped: its output is complete, verifies, and came from the same settings and input.

Each finished stage leaves a record ``OUTPUT/_stages/STAGE.json`` with a *fingerprint* of what
determined its output (settings that change results, the input's file listing with sizes and
modification times, the upstream stage's output) and a *stamp* (sha256 of the stage's own
``stats.json``/``manifest.json``). A later run skips the stage only if the fingerprint is equal,
``_SUCCESS`` exists, the stamp still matches and the stage's own verification passes; anything
else reruns it. Paths outside the record (a partial directory, a hand-copied output) are never
trusted.
"""

from __future__ import annotations

import hashlib
import json
import os

from pyspark.sql import SparkSession

from pipelines.config import DedupConfig, PackConfig, settings_dict
from pipelines.dedup.index import earlier_runs, read_indexes
from pipelines.dedup.pipeline import choose_bands_rows
from pipelines.pack.verify import verify_shards
from pipelines.prepare.fs import Fs
from schemas.packed import ManifestError, validate_manifest
from udfs.tfrecord import CorruptShardError

# Settings that only say where or how to run, not what comes out.
_NOT_OUTPUT_SETTINGS = ("output", "overwrite", "spark")


class StageInvalid(Exception):
    """An existing stage output cannot be reused; the message says why."""


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _settings(cfg) -> dict:
    data = settings_dict(cfg)
    for key in _NOT_OUTPUT_SETTINGS:
        data.pop(key, None)
    return data


def dedup_fingerprint(fs: Fs, cfg: DedupConfig) -> str:
    listing = [(f.path, f.size, f.modified) for f in fs.files(cfg.input.path)]
    value = {"settings": _settings(cfg), "input": listing}
    if cfg.index.against:  # the indexed runs matched against (an index this stage updated still gives the same)
        runs = earlier_runs(read_indexes(cfg, *choose_bands_rows(cfg)), fs, cfg.output)
        value["indexed_runs"] = [run.id for run in runs]
    return digest(value)


def pack_fingerprint(fs: Fs, cfg: PackConfig, upstream_stamp: str) -> str:
    settings = _settings(cfg)
    settings["input"].pop("path")  # always OUTPUT/dedup; its content is the upstream stamp
    tokenizer = fs.read_text(cfg.tokenizer.path) if cfg.tokenizer.path else None
    return digest({"settings": settings, "upstream": upstream_stamp,
                   "tokenizer": hashlib.sha256(tokenizer.encode()).hexdigest() if tokenizer else None})


def _stamped(fs: Fs, root: str, name: str) -> tuple[str, str]:
    if not fs.exists(f"{root}/_SUCCESS"):
        raise StageInvalid(f"{root} has no _SUCCESS (missing or incomplete)")
    text = fs.read_text(f"{root}/{name}")
    if text is None:
        raise StageInvalid(f"{root}/{name} is missing")
    return text, hashlib.sha256(text.encode()).hexdigest()


def verify_dedup(spark: SparkSession, fs: Fs, root: str) -> tuple[dict, str]:
    """``(stats, stamp)`` of a complete dedup output whose tables hold the rows its stats count."""
    text, stamp = _stamped(fs, root, "stats.json")
    try:
        stats = json.loads(text)
        kept = spark.read.parquet(f"{root}/data").count()
        removed = spark.read.parquet(f"{root}/duplicates").count()
    except Exception as exc:  # unreadable JSON or Parquet: the output is damaged
        raise StageInvalid(f"{root} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    expected = (stats.get("kept"), sum(stats.get(f"{match}_duplicates", 0) for match in ("exact", "near", "index")))
    if (kept, removed) != expected:
        raise StageInvalid(f"{root} holds {kept} kept / {removed} removed rows, stats.json says "
                           f"{expected[0]} / {expected[1]}")
    return stats, stamp


def verify_pack(fs: Fs, root: str) -> tuple[dict, str]:
    """``(manifest, stamp)`` of a complete pack output whose shards match the manifest."""
    text, stamp = _stamped(fs, root, "manifest.json")
    try:
        manifest = validate_manifest(json.loads(text))
        if "://" in root and not root.startswith("file://"):
            _check_sizes(fs, root, manifest)
        else:  # local: sizes, sha256 and TFRecord CRCs of every shard
            verify_shards(root.removeprefix("file://"), deep=False)
    except (ValueError, ManifestError, CorruptShardError, OSError) as exc:
        raise StageInvalid(f"{root}: {exc}") from exc
    return manifest, stamp


def _check_sizes(fs: Fs, root: str, manifest: dict) -> None:
    """On object stores reading every shard back is costly; sizes catch missing and truncated files."""
    sizes = {os.path.relpath(f.path, root.rstrip("/")): f.size for f in fs.files(root)}
    files = [(e["file"], e["bytes"]) for entries in manifest["shards"].values() for e in entries]
    files += [(e[name], e[size]) for e in manifest.get("megatron", {}).get("files", [])
              for name, size in (("file", "bytes"), ("idx_file", "idx_bytes"))]
    for name, expected in files:
        if sizes.get(name) != expected:
            raise StageInvalid(f"{root}/{name}: {sizes.get(name)} bytes, manifest says {expected}")


def read_record(fs: Fs, output: str, stage: str) -> dict | None:
    text = fs.read_text(f"{output}/_stages/{stage}.json")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def write_record(fs: Fs, output: str, stage: str, record: dict) -> None:
    fs.write_bytes(f"{output}/_stages/{stage}.json", (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
