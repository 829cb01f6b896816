"""One way to obtain a SparkSession, correct for ``python jobs/x.py`` and ``spark-submit``.

Run with plain ``python``, the job starts local Spark itself (``local[*]``) and points the
Python workers at the running interpreter (``PYSPARK_PYTHON``), so the kernels' dependencies
are found. Under ``spark-submit`` (detected by the gateway it opens) the master and resources
come from the submission and are left alone.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pyspark import inheritable_thread_target
from pyspark.sql import SparkSession

from pipelines.arrow_tasks import map_in_arrow
from pipelines.config import SparkConfig

# Rows per Arrow batch handed to the kernels: large enough to amortise the Python call,
# small enough that a batch of long documents stays well inside a worker's memory.
ARROW_BATCH_ROWS = 2048
# ... and never more bytes than this: a batch of 2,048 source files of a few megabytes each
# (or of texts for exact verification) would otherwise fill a worker.
ARROW_BATCH_BYTES = 16 * 2**20
ZSTD_LEVEL = "parquet.compression.codec.zstd.level"
# Parquet's vectored reads (on by default) fetch each column chunk of a row group into one
# contiguous heap buffer: a text column's chunk is tens of megabytes, and such a buffer fails
# to find room in a fragmented 1 GB heap. The classic path reads chunks in 8 MB pieces.
VECTORED_IO = "parquet.hadoop.vectored.io.enabled"
# A Parquet writer holds its row group in memory until it is full: Parquet's default of 128 MB
# per writing task, twice over with two cores, is half of a 1 GB heap. 32 MB row groups hold
# hundreds of documents and halve nothing that matters to a reader.
ROW_GROUP = "parquet.block.size"
ROW_GROUP_BYTES = 32 * 2**20
# ... but it measures its buffers (row group and page) only every 100 to 10,000 rows: 100
# documents of a few megabytes are hundreds of megabytes held before the first measurement.
# Measuring every 1 to 4 rows bounds that by four rows, for the cost of a sum over the columns.
WRITER_CHECK_MIN, WRITER_CHECK_MAX = "parquet.page.size.row.check.min", "parquet.page.size.row.check.max"
SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
# Bytes per shuffle partition when the job sizes them: large enough that a task's fixed cost
# (tens of milliseconds) is small beside its work, small enough for a task's memory. Adaptive
# execution coalesces smaller partitions, so sizing only has to cap the largest shuffle.
TARGET_PARTITION_BYTES = 128 * 2**20
READER_BATCH = "spark.sql.parquet.columnarReaderBatchSize"
READER_BATCH_ROWS = 4096  # Spark's default
# The Parquet reader decodes a batch into one contiguous buffer per column, grown by doubling
# on the heap outside Spark's memory accounting: 4 MB of rows keeps a task's batch small beside
# what the row group itself costs it (its compressed chunk and dictionary page), and is still
# about a hundred documents of a real code corpus (44 KB rows at most, 13 KB on average).
READER_BATCH_BYTES = 4 * 2**20
STATISTICS = "parquet.column.statistics.enabled"
WHOLE_STAGE_CODEGEN = "spark.sql.codegen.wholeStage"
# Below this many bytes of input files a job's plans are evaluated without generated code. Spark
# compiles every stage of every query to Java (Janino, tens of milliseconds each, more in a JVM
# whose JIT is still cold); a job of a few dozen queries over a small input spends more compiling
# than running. Measured on the dedup job (BENCHMARKS.md): 0.66 s less on the bundled sample (four
# pairs), 0.5 s less on the 49 MB file of the 0.25 GB slice, no difference beyond the noise on the
# 197 MB file of the 1 GB slice, where the row-at-a-time work starts to count.
GENERATED_CODE_FROM_BYTES = 64 * 2**20


# A class-data-sharing archive of the classes the dedup job loads, written into the environment
# by scripts/warm_start.py: a JVM the job starts maps them instead of loading and verifying
# some 20,000 classes from the jars, which halves its start (4.3 s instead of 8.2 s to a first
# query, BENCHMARKS.md). A JVM whose jars no longer match ignores it.
CLASS_ARCHIVE = os.environ.get("CORPUS_PREP_CLASS_ARCHIVE", os.path.join(sys.prefix, "corpus-prep-classes.jsa"))

# The JVM's log configuration when the job starts Spark itself: warnings and errors, without the
# start-up notes a local run cannot act on (the file says which). A log4j2 configuration in
# Spark's configuration directory, which Spark puts on the JVM's class path, is the user's, and wins.
LOG_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log4j2.properties")


def jvm_log_options() -> str:
    """``-Dlog4j2.configurationFile=LOG_CONFIG`` unless Spark's configuration directory has a log4j2 file."""
    spark_home = os.environ.get("SPARK_HOME")
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (os.path.join(spark_home, "conf") if spark_home else None)
    if conf_dir and os.path.isdir(conf_dir) and any(name.startswith("log4j2") for name in os.listdir(conf_dir)):
        return ""
    return f" -Dlog4j2.configurationFile={LOG_CONFIG}"

# PySpark's worker daemon run through :mod:`pipelines.worker_daemon`, which has the workers import
# PySpark from its installed package's byte code rather than compile it from Spark's zip: 0.5 s
# sooner to the first Python task of a local job (BENCHMARKS.md).
WORKER_DAEMON = "pipelines.worker_daemon"


def under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _dedup_kernels() -> None:
    """The dedup job's kernels, imported only in the worker that loads them."""
    from udfs.warm import load_kernels

    load_kernels()


# The session :func:`start_spark` is starting, for the ``get_spark`` call with the same settings.
_starting: tuple[SparkConfig, Future] | None = None


def start_spark(cfg: SparkConfig, kernels: Callable[[], None] = _dedup_kernels) -> None:
    """Start ``get_spark(cfg)``'s session in a background thread and return at once.

    A job's fixed cost starts with two waits in a row: the JVM's start (2-3 s to a session) and
    the import of the pipeline (about a second: NumPy, Numba, SciPy, Matplotlib). Started here,
    before the import, the two overlap, and the session's first Python worker starts loading the
    job's ``kernels`` as soon as the session is up (:func:`warm_python_workers`). The job's own
    ``get_spark(cfg)`` waits for this session and returns it, or raises the error that stopped
    it, in the job's thread.
    """
    global _starting
    future: Future = Future()

    def start() -> None:
        try:
            spark = _new_spark(cfg)
            warm_python_workers(spark, kernels=kernels)
            future.set_result(spark)
        except BaseException as err:  # raised by the get_spark that takes it
            future.set_exception(err)

    _starting = (cfg, future)
    threading.Thread(target=start, name="spark-start", daemon=True).start()
    # PySpark's py4j converters import pyspark.testing.utils, and with it pandas (0.25-0.35 s), in
    # the session's first JVM call that passes arguments: SparkContext's start waits for it. Here,
    # while the JVM launches, the import costs the job nothing (BENCHMARKS.md).
    importlib.import_module("pyspark.testing.utils")


def get_spark(cfg: SparkConfig) -> SparkSession:
    """The session of ``cfg``: the one :func:`start_spark` is starting for it, or a new one."""
    global _starting
    if _starting is not None and _starting[0] == cfg:
        future, _starting = _starting[1], None
        return future.result()
    return _new_spark(cfg)


def _new_spark(cfg: SparkConfig) -> SparkSession:
    submitted = under_spark_submit()
    if not submitted:
        # PySpark launches its JVM as a "pyspark-shell", for which Spark turns its console progress
        # bar on unless told otherwise, so it is told either way (``cfg.progress_bar``). The launch
        # arguments of ``PYSPARK_SUBMIT_ARGS`` carry it: a value the user set there wins. Under
        # ``spark-submit`` the bar is the submission's ``--conf spark.ui.showConsoleProgress``.
        os.environ.setdefault("PYSPARK_SUBMIT_ARGS",
                              f"--conf spark.ui.showConsoleProgress={str(cfg.progress_bar).lower()} pyspark-shell")
    builder = SparkSession.builder.appName(cfg.app_name)
    master = cfg.master or (None if submitted else "local[*]")
    if master:
        builder = builder.master(master)
    if master and master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        if not submitted:
            options = cfg.driver_java_options + jvm_log_options()
            if os.path.exists(CLASS_ARCHIVE):
                options += f" -XX:SharedArchiveFile={CLASS_ARCHIVE} -Xlog:cds=off"
            builder = (builder.config("spark.driver.memory", cfg.driver_memory)
                       .config("spark.driver.extraJavaOptions", options)
                       .config("spark.python.daemon.module", WORKER_DAEMON))
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
    for key, value in ((VECTORED_IO, "false"), (ROW_GROUP, str(ROW_GROUP_BYTES)), (WRITER_CHECK_MIN, "1"),
                       (WRITER_CHECK_MAX, "4")):
        if hadoop.get(key) is None:  # as for the level: --conf spark.hadoop.<key> wins
            hadoop.set(key, value)
    return spark


# The warm-ups started in a session: its context and the event each sets when it is over.
_warm_ups: tuple[object, list[threading.Event]] | None = None


def warm_python_workers(spark: SparkSession, workers: int = 1,
                        kernels: Callable[[], None] = _dedup_kernels) -> threading.Event:
    """Have ``workers`` Python workers run ``kernels``, a function that loads a job's compiled
    kernels (the dedup job's, :func:`udfs.warm.load_kernels`, by default), each by a one-task
    Spark job started in a background thread; the event returned is set when they are over:
    wait for it before the first job that runs Python. Warm-ups still running count, so a
    second call asks only for more.

    A Python worker is started by the first task that needs one and then reused by later tasks
    (``spark.python.worker.reuse``). Its start is on the critical path of that first task: about a
    second of imports and kernel loading, which on a small input is most of the signature stage.
    Started with the session, one overlaps the reading of the corpus, which runs in the JVM alone;
    a task runs in an idle worker if there is one, so the warm-ups that run at once start one each.
    Only local masters with worker reuse are warmed (a cluster's executors start their workers
    once each, beside much work). A failed warm-up is ignored: the stage that needs the worker
    meets the same failure and reports it.
    """
    global _warm_ups
    context = spark.sparkContext
    if _warm_ups is None or _warm_ups[0] is not context:
        _warm_ups = (context, [])
    running = [event for event in _warm_ups[1] if not event.is_set()]
    if not context.master.startswith("local") or spark.conf.get("spark.python.worker.reuse", "true") == "false":
        workers = 0
    for _ in range(workers - len(running)):
        running.append(_start_warm_up(spark, kernels))
    _warm_ups = (context, running)
    return _all_set(running)


def _start_warm_up(spark: SparkSession, kernels: Callable[[], None]) -> threading.Event:
    done = threading.Event()

    def warm() -> None:
        spark.sparkContext.setJobGroup("corpus-prep.warm-up", "corpus-prep warm-up: a Python worker, kernels loaded")
        try:
            map_in_arrow(spark.range(1, numPartitions=1), functools.partial(_load_kernels, kernels), "id long").collect()
        except Exception:  # noqa: BLE001 - see warm_python_workers
            pass
        finally:
            done.set()

    threading.Thread(target=warm, name="python-worker-warm-up", daemon=True).start()
    return done


def _all_set(events: list[threading.Event]) -> threading.Event:
    """An event set once every one of ``events`` is."""
    if len(events) == 1:
        return events[0]
    joined = threading.Event()

    def join() -> None:
        for event in events:
            event.wait()
        joined.set()

    threading.Thread(target=join, name="python-worker-warm-ups", daemon=True).start()
    return joined


def _load_kernels(kernels: Callable[[], None], batches):
    kernels()
    for _ in batches:  # a worker that leaves input unread is not reused
        pass
    yield from ()


def concurrently(spark: SparkSession, *calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at once, each in a thread of its own that carries the caller's Spark job group
    and tags, and return their results in order (the first exception, once all are over).

    Meant for independent small queries: their wall time is mostly the driver's (planning,
    scheduling, the gaps between a query's jobs), which one query spends while another runs.
    """
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="concurrent-query") as pool:
        futures = [pool.submit(inheritable_thread_target(spark)(call)) for call in calls]
        return [future.result() for future in futures]


class FittedSettings:
    """Session settings fitted to the data for the length of one job, each unless the user chose it.

    Spark's defaults suit neither a 100-document sample nor a terabyte: 200 shuffle partitions
    (each one a map-side file per map task; a repartition to a fixed count, which adaptive
    execution does not coalesce, runs 200 tasks), 4,096 rows per Parquet reader batch
    (4,096 source files of a few megabytes are gigabytes in one contiguous buffer) and code
    generated and compiled for every query stage (more work than a small input's rows). A value
    the user set (``--shuffle-partitions``, ``--conf`` at submission, ``spark.conf.set``) is
    always kept; :meth:`restore` leaves the session as it was found, so a later job in the
    same session fits its own.
    """

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._found: dict[str, str | None] = {}

    def user_value(self, key: str) -> str | None:
        """``key`` as the user set it before this job, or None if Spark's default was in force."""
        if key not in self._found:
            self._found[key] = self.spark.conf.get(key, None)  # None unless set explicitly
        return self._found[key]

    def fit(self, key: str, value: int | str) -> str:
        """Set ``key`` to ``value`` unless the user set it; returns the value in force."""
        user = self.user_value(key)
        if user is not None:
            return user
        self.spark.conf.set(key, str(value))
        return str(value)

    def partitions(self, total_bytes: int, target_bytes: int = TARGET_PARTITION_BYTES, spread_bytes: int = 0) -> int:
        """Partitions for ``total_bytes`` of shuffled data: the user's shuffle partitions, else one
        per ``target_bytes`` and at least one per core, unless that would make partitions of fewer
        than ``spread_bytes`` (then one per ``spread_bytes``, at least one)."""
        user = self.user_value(SHUFFLE_PARTITIONS)
        if user is not None:
            return int(user)
        cores = self.spark.sparkContext.defaultParallelism
        spread = cores if spread_bytes <= 0 else min(cores, math.ceil(total_bytes / spread_bytes))
        return max(1, spread, math.ceil(total_bytes / target_bytes))

    def fit_shuffle(self, total_bytes: int) -> int:
        """Shuffle partitions for a largest shuffle of ``total_bytes``."""
        return int(self.fit(SHUFFLE_PARTITIONS, self.partitions(total_bytes)))

    def fit_documents(self, row_bytes: int | None, text_column: str) -> int:
        """Reading and writing rows of up to ``row_bytes`` (None: unknown) with a text column.

        Parquet reader batches hold ``READER_BATCH_BYTES`` of such rows (between 1 and Spark's
        default 4,096; returned). The text column is written without min/max statistics: a
        Parquet writer keeps a copy of both values of every row group until its file closes,
        which for documents of megabytes grows with the file, and a document's text is never
        a useful bound. (Session settings reach the Parquet reader and writer as Hadoop keys.)
        """
        self.fit(f"{STATISTICS}#{text_column}", "false")
        rows = READER_BATCH_ROWS if not row_bytes else min(READER_BATCH_ROWS, max(1, READER_BATCH_BYTES // row_bytes))
        return int(self.fit(READER_BATCH, rows))

    def fit_code_generation(self, input_bytes: int) -> None:
        """Whole-stage code generation for a job over ``input_bytes`` of files: off below
        ``GENERATED_CODE_FROM_BYTES``."""
        if input_bytes < GENERATED_CODE_FROM_BYTES:
            self.fit(WHOLE_STAGE_CODEGEN, "false")

    def restore(self) -> None:
        for key, value in self._found.items():
            if value is None:
                self.spark.conf.unset(key)
            else:
                self.spark.conf.set(key, value)
