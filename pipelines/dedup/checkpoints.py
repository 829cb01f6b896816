"""Verified checkpoints: what a rerun may reuse after a crash, and how it knows it is intact.

Every intermediate table is written as Parquet under ``<staging>/_work/NAME`` and committed by
a marker ``_work/NAME/_COMMITTED`` holding its row count, the counts its stage asked for and a
content checksum (the sum of ``xxhash64`` over all columns of all rows: order-insensitive, so
independent of the file layout). All are observed on the rows as the write job writes them (Spark's
``observe``: no second job over the table) and the marker is written only after that job
committed.

The staging directory of a run is named by a fingerprint of its input files and settings
(:func:`run_key`), so rerunning the same command after a crash finds the work of the crashed
run. A checkpoint is reused only when its marker exists *and* the files still read back to the
recorded count and checksum; a checkpoint without a marker (the crash hit its write), or one
whose files are missing, truncated or altered, is deleted and recomputed. Every stage is
deterministic, so a recomputed checkpoint must match the checksum of the discarded one when
that one was committed; if it does not, nothing downstream of it is trusted either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, Observation, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from pipelines.config import DedupConfig, result_settings
from pipelines.io.hadoop import FileEntry, HadoopFs
from pipelines.io.publish import OutputDir

log = logging.getLogger("corpus_prep.checkpoints")

MARKER = "_COMMITTED"
# Checkpoints are written without Parquet's dictionary encoding. Their columns are ids, hashes and
# signatures, nearly all distinct, so the writer would build a dictionary of every value of a page
# only to drop it: writing the 1 GB slice's signature table (BENCHMARKS.md) took 1.05-1.2 s with
# the dictionary and 0.8 s without, for files of the same size.
CHECKPOINT_WRITE_OPTIONS = {"parquet.enable.dictionary": "false"}
# Bump when a stage's output changes meaning, so that old staging work is never reused.
FORMAT_VERSION = 4


def run_key(fs: HadoopFs, cfg: DedupConfig, indexed_runs: Sequence[str] = (),
            files: Sequence[FileEntry] | None = None) -> str:
    """Fingerprint of a dedup run: its input's data files (path, size, modification time, as
    ``HadoopFs.files`` lists them; ``files`` if the caller has listed them already), the settings
    that decide the result and, under ``--against``, the ids of the indexed runs it is matched
    against. It names the run's staging directory, and ``jobs/prepare.py`` records it to know
    when its dedup stage may be skipped."""
    listed = fs.files(cfg.input.path) if files is None else files
    value = {"format": FORMAT_VERSION, "files": [(f.path, f.size, f.modified) for f in listed],
             "settings": result_settings(cfg)}
    if indexed_runs:
        value["indexed_runs"] = list(indexed_runs)
    payload = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _summary_columns(df: DataFrame) -> list[Column]:
    return [F.count(F.lit(1)).alias("rows"),
            F.sum(F.xxhash64(*[F.col(f"`{c}`") for c in df.columns]).cast("decimal(38,0)")).alias("checksum")]


def _summary(row) -> tuple[int, str]:
    return row["rows"], str(row["checksum"] or 0)


def observed_write(df: DataFrame, path: str, *metrics: Column, options: dict[str, str] | None = None) -> Row:
    """Write ``df`` as Parquet at ``path`` (replacing it, with the writer ``options``) and return
    ``metrics``, aggregates over the rows as the write job writes them (Spark's ``observe``: no
    second job over the table)."""
    observation = Observation(f"write {path} {uuid.uuid4().hex}")
    df.observe(observation, *metrics).write.options(**(options or {})).mode("overwrite").parquet(path)
    return Row(**observation.get)


def content_summary(df: DataFrame) -> tuple[int, str]:
    """``(rows, checksum)`` of a table, in one aggregate."""
    return _summary(df.agg(*_summary_columns(df)).first())


@dataclass
class Checkpoints:
    """The ``checkpoint(df, name) -> DataFrame`` callback the stages use, with verified reuse."""

    spark: SparkSession
    out: OutputDir
    reused: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # per checkpoint, as committed (for progress lines)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # per checkpoint, the counts asked of it
    discarded: list[str] = field(default_factory=list)  # found but incomplete or corrupt
    _trusted: bool = True

    def __call__(self, df: DataFrame, name: str, counts: dict[str, Column] | None = None) -> DataFrame:
        """``df`` written as checkpoint ``name`` (or its intact earlier commit) and read back.

        ``counts``: named aggregates over its rows (``F.count_if(...)``), observed as the write
        job writes them and kept in the marker, so that neither a run nor its resumption spends
        a query on them: ``self.counts[name]``.
        """
        wanted = counts or {}
        path = self.out.path("_work", name)
        previous = self._marker(name)
        lacks_counts = previous is not None and not set(wanted) <= set(previous.get("counts", {}))
        if previous is not None and self._trusted and not lacks_counts:
            stored = self._verified(path, df, previous)
            if stored is not None:
                self.reused.append(name)
                self.rows[name] = int(previous["rows"])
                self.counts[name] = {key: int(previous["counts"][key]) for key in wanted}
                return stored
        if lacks_counts:
            log.info("checkpoint %s was committed without the counts this run needs; recomputing it", name)
        elif self.out.exists(path):
            self.discarded.append(name)
            log.warning("checkpoint %s is incomplete or corrupt; recomputing it", name)
        observed = observed_write(df, path, *_summary_columns(df), *[c.alias(key) for key, c in wanted.items()],
                                  options=CHECKPOINT_WRITE_OPTIONS)
        rows, checksum = _summary(observed)
        written = self._read(path, df)
        if previous is not None and (previous["rows"], previous["checksum"]) != (rows, checksum):
            log.warning("recomputed checkpoint %s differs from its earlier commit; later checkpoints "
                        "will be recomputed too", name)
            self._trusted = False
        self.rows[name] = int(rows)
        self.counts[name] = {key: int(observed[key] or 0) for key in wanted}
        self.out.write_text(f"_work/{name}/{MARKER}",
                            json.dumps({"rows": rows, "checksum": checksum, "counts": self.counts[name]}))
        return written

    def driver_table(self, table: pa.Table, name: str) -> DataFrame:
        """``table``, made on the driver, as a data frame read from ``_work/NAME`` (one Parquet file).

        ``spark.createDataFrame`` would carry the rows inside the tasks that read them: 3.6 MB
        a task for the 115,247 homed candidates of the 1 GB real slice (Spark warns from 1 MB),
        tens of MB at ``DedupConfig.broadcast_removed_ids``. A file is read like any checkpoint.
        Nothing is verified or reused: the caller makes the table again on every run.
        """
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self.out.write_bytes(f"_work/{name}/part-0.parquet", sink.getvalue().to_pybytes())
        return self.spark.read.schema(from_arrow_schema(table.schema)).parquet(self.out.path("_work", name))

    def _marker(self, name: str) -> dict | None:
        text = self.out.read_text(f"_work/{name}/{MARKER}")
        try:
            return json.loads(text) if text is not None else None
        except json.JSONDecodeError:  # a damaged marker commits nothing
            return None

    def _read(self, path: str, df: DataFrame) -> DataFrame:
        """The files at ``path`` as ``df``'s columns; the schema is known, so no footer-reading job."""
        return self.spark.read.schema(df.schema).parquet(path)

    def _verified(self, path: str, df: DataFrame, marker: dict) -> DataFrame | None:
        try:
            stored = self._read(path, df)
            if content_summary(stored) == (marker["rows"], marker["checksum"]):
                return stored
        except Exception as err:  # unreadable files: a truncated footer, a missing column chunk
            log.warning("checkpoint %s cannot be read back (%s)", path, str(err).splitlines()[0])
        return None
