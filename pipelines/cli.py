"""What the command lines of all jobs share: the parser, the corpus and Spark options, the job body.

Each job's own options live beside it (``pipelines.dedup.cli``, ``pipelines.pack.cli``,
``pipelines.prepare.cli``); every default comes from ``pipelines.config``.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar

from pipelines.config import InputConfig, SparkConfig
from pipelines.errors import OneLineError, one_line
from pipelines.logs import configure_logging, log_config
from pipelines.timing import CANCELLED

# The name a job's usage line shows: ``jobs/dedup.py`` run directly, ``corpus-prep dedup`` as a subcommand.
_PROG: ContextVar[str | None] = ContextVar("corpus_prep_prog", default=None)


@contextmanager
def invoked_as(prog: str):
    token = _PROG.set(prog)
    try:
        yield
    finally:
        _PROG.reset(token)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every option's default unless its help already states it (flags have none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = "default" in text.lower() or "%(default)" in text
        if (shown or not action.option_strings or action.default is None or isinstance(action.default, bool)
                or action.default is argparse.SUPPRESS or action.nargs == 0):
            return text
        return f"{text} (default: %(default)s)"


class JobParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line: a usage of fifty options would bury the one that is wrong."""

    def error(self, message: str):
        self.exit(2, f"error: {one_line(message)} (see {self.prog} --help)\n")


def add_input_arguments(parser: argparse.ArgumentParser, input_help: str | None = None,
                        id_column: bool = True) -> None:
    """The corpus options every job shares (``--id-column`` only where ids matter)."""
    d = InputConfig(path="")
    parser.add_argument("--input", required=True, help=input_help or
                        "Parquet file/dir/glob, JSON Lines file/dir/glob, or an HF save_to_disk dir")
    parser.add_argument("--input-format", default=d.input_format, choices=["auto", "parquet", "json", "hf"],
                        help="auto: from the path (a save_to_disk dir, JSON Lines suffixes, else Parquet)")
    parser.add_argument("--text-column", default=d.text_column,
                        help=f"text column (falls back to {d.fallback_text_column!r} if absent)")
    if id_column:
        parser.add_argument("--id-column", default=d.id_column,
                            help="unique integer or string id column; default: ids derived from row hashes")


def add_spark_arguments(parser: argparse.ArgumentParser, d: SparkConfig = SparkConfig()) -> None:
    parser.add_argument("--master", default=d.master,
                        help="Spark master (default: spark-submit's, or local[*] under plain python)")
    parser.add_argument("--shuffle-partitions", type=int, default=d.shuffle_partitions,
                        help="spark.sql.shuffle.partitions (default: Spark's, or the submission's)")
    parser.add_argument("--driver-memory", default=d.driver_memory,
                        help="driver memory when the job starts local Spark itself")


def input_config(args: argparse.Namespace, id_column: bool = True) -> InputConfig:
    """The options of :func:`add_input_arguments` (given the same ``id_column``) as an ``InputConfig``."""
    return InputConfig(path=args.input, text_column=args.text_column, id_column=args.id_column if id_column else None,
                       input_format=args.input_format)


def spark_config(args: argparse.Namespace, app_name: str) -> SparkConfig:
    """The options of :func:`add_spark_arguments` as a ``SparkConfig``; Spark's progress bar goes with the
    progress lines (off under ``--quiet``)."""
    return SparkConfig(master=args.master, shuffle_partitions=args.shuffle_partitions,
                       driver_memory=args.driver_memory, app_name=app_name, progress_bar=log_config(args).progress)


INTERRUPTED = "interrupted; rerun the same command to resume"
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
# After Ctrl-C, how long the job may take to fail its cancelled Spark job and clean up
# (staging cleared, checkpoints kept) before the process exits anyway.
CLEANUP_SECONDS = 60.0


def _quiet_py4j(record: logging.LogRecord) -> bool:
    """After Ctrl-C, py4j's connection errors (logged with tracebacks, some on the root logger) are expected."""
    return "py4j" not in record.pathname


def _stop_spark_jobs(done: threading.Event) -> None:
    """Cancel the running Spark job, and each one the worker starts after it, until the worker is ``done``."""
    from pyspark import SparkContext

    CANCELLED.set()
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_py4j)
    deadline = time.monotonic() + CLEANUP_SECONDS
    quiet = False
    while not done.is_set() and time.monotonic() < deadline:
        context = SparkContext._active_spark_context
        try:
            if context is not None:
                if not quiet:  # a cancelled job logs its abort with a Java stack trace
                    context.setLogLevel("OFF")
                    quiet = True
                context.cancelAllJobs()
        except Exception:  # the JVM may be going down too (spark-submit forwards Ctrl-C to it)
            pass
        done.wait(0.5)


def _run_interruptible(run: Callable[[object], object], cfg: object) -> object:
    """``run(cfg)`` in a worker thread, so that Ctrl-C reaches a main thread that is only waiting.

    PySpark's own SIGINT handler cancels the jobs from inside the signal handler, re-entering the
    py4j call in progress: the connection breaks and py4j, pyspark and the job print their
    tracebacks. Here Ctrl-C raises ``KeyboardInterrupt`` in the waiting main thread, which
    cancels the Spark jobs; the worker then fails as after any failure (staging cleared, verified
    checkpoints kept for the rerun) and ``KeyboardInterrupt`` propagates, unless the job completed
    anyway (Ctrl-C during its last, Spark-free step). The main thread polls an event with sleeps:
    a ``Thread.join`` interrupted by Ctrl-C can leave ``is_alive()`` False while the thread still
    runs (CPython 3.11). Outside the main thread (no signals there) ``run`` is simply called.
    """
    if threading.current_thread() is not threading.main_thread():
        return run(cfg)
    CANCELLED.clear()
    outcome: dict[str, object] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["result"] = run(cfg)
        except BaseException as err:  # handed to the main thread
            outcome["error"] = err
        finally:
            done.set()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=work, name="corpus-prep-job", daemon=True).start()
        while not done.is_set():
            time.sleep(0.1)
    except KeyboardInterrupt:
        try:
            _stop_spark_jobs(done)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            pass
        if "result" not in outcome:
            raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _skip_final_collection() -> None:
    """Freeze the heap as the interpreter exits, so that its last full collection is skipped.

    The driver ends holding a heap of PySpark, py4j, NumPy, Numba and Matplotlib objects, and
    CPython's shutdown collects it for nothing: the process's memory goes back to the system at
    once. The interpreter took 0.47 and 0.58 s to exit after the job on the bundled sample, and
    0.07-0.08 s with the heap frozen (BENCHMARKS.md, "The workers' full collections"). Files the
    job wrote are closed by then; the outputs are published before the job returns.
    """
    atexit.unregister(gc.freeze)  # once, however many jobs a process runs
    atexit.register(gc.freeze)


def run_job(argv: list[str] | None, parser: argparse.ArgumentParser,
            to_config: Callable[[argparse.Namespace], object], run: Callable[[object], object],
            report: Callable[[object], str]) -> int:
    """The body every ``jobs/*.py`` shares: parse, build the config, run, print the result.

    Every :class:`OneLineError` prints one ``error:`` line and returns its exit code: 2 for a
    :class:`UserError` (a bad option value or combination from ``to_config``, the input, the
    output, the tokenizer), as for argparse's own usage errors; 1 for a failed stage. Ctrl-C
    prints one line and returns 130 (:func:`_run_interruptible`). Anything else keeps its
    traceback: it is a bug or an infrastructure failure.
    """
    parser.prog = _PROG.get() or parser.prog
    parser.formatter_class = HelpFormatter
    _skip_final_collection()
    args = parser.parse_args(argv)
    configure_logging(log_config(args))
    try:
        result = _run_interruptible(run, to_config(args))
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return INTERRUPTED_EXIT
    except OneLineError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return err.exit_code
    print(report(result))
    return 0
