"""One way to obtain a SparkSession, correct for ``python jobs/x.py`` and ``spark-submit``.

Run with plain ``python``, the job starts local Spark itself (``local[*]``) and points the
Python workers at the running interpreter (``PYSPARK_PYTHON``), so the kernels' dependencies
are found. Under ``spark-submit`` (detected by the gateway it opens) the master and resources
come from the submission and are left alone.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

from pyspark.sql import SparkSession

from pipelines.config import SparkConfig

# Rows per Arrow batch handed to the kernels: large enough to amortise the Python call,
# small enough that a batch of long documents stays well inside a worker's memory.
ARROW_BATCH_ROWS = 2048
# ... and never more bytes than this: a batch of 2,048 source files of a few megabytes each
# (or of text pairs for exact verification) would otherwise fill a worker.
ARROW_BATCH_BYTES = 64 * 2**20
ZSTD_LEVEL = "parquet.compression.codec.zstd.level"
SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
# Bytes per shuffle partition when the job sizes them: large enough that a task's fixed cost
# (tens of milliseconds) is small beside its work, small enough for a task's memory. Adaptive
# execution coalesces smaller partitions, so sizing only has to cap the largest shuffle.
TARGET_PARTITION_BYTES = 128 * 2**20


def under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(cfg: SparkConfig) -> SparkSession:
    submitted = under_spark_submit()
    builder = SparkSession.builder.appName(cfg.app_name)
    master = cfg.master or (None if submitted else "local[*]")
    if master:
        builder = builder.master(master)
    if master and master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        if not submitted:
            builder = builder.config("spark.driver.memory", cfg.driver_memory)
    builder = (builder
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
               .config("spark.sql.execution.arrow.maxBytesPerBatch", str(ARROW_BATCH_BYTES))
               .config("spark.sql.adaptive.enabled", "true")
               .config("spark.sql.parquet.compression.codec", "zstd"))
    if cfg.shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
    if not cfg.ui:
        builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    if hadoop.get(ZSTD_LEVEL) is None:  # a level given with --conf spark.hadoop.<key> wins
        hadoop.set(ZSTD_LEVEL, str(cfg.zstd_level))
    return spark


@dataclass
class ShufflePartitions:
    """``spark.sql.shuffle.partitions`` fitted to the data, unless the user chose a value.

    Spark's default of 200 is far too many for a small input (each partition of a shuffle is
    one map-side file per map task, and a shuffle that adaptive execution cannot coalesce, such
    as a repartition to a fixed count, runs 200 tasks) and too few for a terabyte. A value
    set by the user (``--shuffle-partitions``, ``--conf`` at submission, ``spark.conf.set``) is
    always kept.
    """

    spark: SparkSession
    user: int | None  # the user's value, or None when Spark's default is in force

    @classmethod
    def of(cls, spark: SparkSession) -> "ShufflePartitions":
        value = spark.conf.get(SHUFFLE_PARTITIONS, None)  # None unless set explicitly
        return cls(spark, int(value) if value is not None else None)

    def count(self, total_bytes: int, target_bytes: int = TARGET_PARTITION_BYTES) -> int:
        """Partitions for ``total_bytes`` of shuffled data: the user's value, else
        ``max(cores, ceil(total_bytes / target_bytes))``."""
        if self.user is not None:
            return self.user
        return max(self.spark.sparkContext.defaultParallelism, math.ceil(total_bytes / target_bytes))

    def fit(self, total_bytes: int) -> int:
        """Set the session's shuffle partitions for a largest shuffle of ``total_bytes``; returns the value."""
        partitions = self.count(total_bytes)
        self.spark.conf.set(SHUFFLE_PARTITIONS, str(partitions))
        return partitions

    def restore(self) -> None:
        """Leave the session as it was found (a later job sizes its own)."""
        if self.user is None:
            self.spark.conf.unset(SHUFFLE_PARTITIONS)
        else:
            self.spark.conf.set(SHUFFLE_PARTITIONS, str(self.user))
