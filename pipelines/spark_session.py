"""One way to obtain a SparkSession, correct for ``python jobs/x.py`` and ``spark-submit``.

Run with plain ``python``, the job starts local Spark itself (``local[*]``) and points the
Python workers at the running interpreter (``PYSPARK_PYTHON``), so the kernels' dependencies
are found. Under ``spark-submit`` (detected by the gateway it opens) the master and resources
come from the submission and are left alone.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from pipelines.config import SparkConfig

# Rows per Arrow batch handed to the kernels: large enough to amortise the Python call,
# small enough that a batch of long documents stays well inside a worker's memory.
ARROW_BATCH_ROWS = 2048
# ... and never more bytes than this: a batch of 2,048 source files of a few megabytes each
# (or of texts for exact verification) would otherwise fill a worker.
ARROW_BATCH_BYTES = 64 * 2**20
ZSTD_LEVEL = "parquet.compression.codec.zstd.level"


def under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(cfg: SparkConfig, progress_bar: bool = False) -> SparkSession:
    """``progress_bar``: Spark's console progress bar when Spark starts here (under ``spark-submit``,
    ``--conf spark.ui.showConsoleProgress=true``); the launch arguments of ``PYSPARK_SUBMIT_ARGS``
    carry it, so a value the user set there wins."""
    submitted = under_spark_submit()
    if progress_bar and not submitted:
        os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--conf spark.ui.showConsoleProgress=true pyspark-shell")
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
