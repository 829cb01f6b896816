"""Command-line parsing for the jobs; defaults come from ``pipelines.config``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar

from pipelines.config import (DEDUP_SPARK, DedupConfig, InputConfig, KeepPolicy, LshConfig, MinHashConfig,
                              SparkConfig, VerifyMode)
from pipelines.errors import UserError, one_line
from pipelines.logs import add_logging_arguments, configure_logging, log_config

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


def input_config(args: argparse.Namespace) -> InputConfig:
    return InputConfig(path=args.input, text_column=args.text_column, id_column=args.id_column,
                       input_format=args.input_format)


def spark_config(args: argparse.Namespace, app_name: str) -> SparkConfig:
    return SparkConfig(master=args.master, shuffle_partitions=args.shuffle_partitions,
                       driver_memory=args.driver_memory, app_name=app_name)


def dedup_parser() -> argparse.ArgumentParser:
    mh, lsh, dd = MinHashConfig(), LshConfig(), DedupConfig
    p = JobParser(
        prog="jobs/dedup.py",
        description="Remove exact and near-duplicate documents (MinHash LSH, verified edges, "
                    "connected components); writes data/, duplicates/, rejected/, stats.json.")
    add_input_arguments(p)
    p.add_argument("--output", required=True, help="output directory (must not exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--ngram", type=int, default=mh.ngram, help="shingle size in words (or characters)")
    p.add_argument("--char-ngrams", action="store_true", help="shingle characters instead of words")
    p.add_argument("--num-perm", type=int, default=mh.num_perm, help="MinHash permutations")
    p.add_argument("--seed", type=int, default=mh.seed, help="seed of the permutation draw")
    p.add_argument("--threshold", type=float, default=lsh.threshold, help="Jaccard similarity threshold")
    p.add_argument("--bands", type=int, default=None, help="LSH bands (with --rows; default: optimal)")
    p.add_argument("--rows", type=int, default=None, help="rows per band (with --bands)")
    p.add_argument("--verify", default=lsh.verify.value, choices=[m.value for m in VerifyMode],
                   help="exact: exact Jaccard decides wherever the signature estimate is within "
                        f"{lsh.uncertain_within_se:g} standard errors of the threshold (default); estimate: the "
                        "signature estimate alone; off: every LSH candidate is a duplicate edge")
    p.add_argument("--no-verify", dest="verify", action="store_const", const=VerifyMode.OFF.value,
                   help="same as --verify off")
    p.add_argument("--uncertain-within-se", type=float, default=lsh.uncertain_within_se,
                   help="under --verify exact, estimates this many standard errors or closer to the "
                        "threshold get their exact Jaccard")
    p.add_argument("--all-pairs-bucket", type=int, default=lsh.all_pairs_bucket,
                   help="LSH buckets of up to this many documents are compared pair by pair")
    p.add_argument("--bucket-neighbours", type=int, default=lsh.bucket_neighbours,
                   help="in larger buckets, each document is compared with this many random members per band")
    p.add_argument("--keep", default=KeepPolicy.SMALLEST_ID.value,
                   choices=[KeepPolicy.SMALLEST_ID.value, KeepPolicy.LONGEST.value],
                   help="survivor of each cluster")
    p.add_argument("--keep-priority", metavar="COLUMN", default=None,
                   help="keep the member with the highest value of COLUMN (ties: smallest id)")
    p.add_argument("--hub-degree", type=int, default=dd.hub_degree,
                   help="nodes/clusters with this many rows are joined by broadcast, not shuffled to one task")
    p.add_argument("--giant-cluster-size", type=int, default=dd.giant_cluster_size,
                   help="clusters of this many documents are listed in stats.json (giant_clusters)")
    add_spark_arguments(p, DEDUP_SPARK)
    add_logging_arguments(p)
    return p


def dedup_config(args: argparse.Namespace) -> DedupConfig:
    keep = KeepPolicy.PRIORITY if args.keep_priority else KeepPolicy(args.keep)
    return DedupConfig(
        input=input_config(args),
        output=args.output,
        overwrite=args.overwrite,
        minhash=MinHashConfig(ngram=args.ngram, char_ngrams=args.char_ngrams, num_perm=args.num_perm,
                              seed=args.seed),
        lsh=LshConfig(threshold=args.threshold, bands=args.bands, rows=args.rows, verify=VerifyMode(args.verify),
                      uncertain_within_se=args.uncertain_within_se, all_pairs_bucket=args.all_pairs_bucket,
                      bucket_neighbours=args.bucket_neighbours),
        keep=keep,
        keep_priority_column=args.keep_priority,
        hub_degree=args.hub_degree,
        giant_cluster_size=args.giant_cluster_size,
        spark=spark_config(args, "corpus-prep-dedup"),
    )


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


def run_job(argv: list[str] | None, parser: argparse.ArgumentParser,
            to_config: Callable[[argparse.Namespace], object], run: Callable[[object], object],
            report: Callable[[object], str], exit_codes: dict[type[BaseException], int] | None = None) -> int:
    """The body every ``jobs/*.py`` shares: parse, build the config, run, print the result.

    Every :class:`UserError` (a bad option value or combination from ``to_config``, the input,
    the output, the tokenizer) prints one ``error:`` line and returns 2, as argparse's own usage
    errors do; ``exit_codes`` maps further exceptions (a failed stage) to one line and a code.
    Ctrl-C prints one line and returns 130 (:func:`_run_interruptible`). Anything else keeps its
    traceback: it is a bug or an infrastructure failure.
    """
    parser.prog = _PROG.get() or parser.prog
    parser.formatter_class = HelpFormatter
    args = parser.parse_args(argv)
    configure_logging(log_config(args))
    codes = {UserError: UserError.exit_code, **(exit_codes or {})}
    try:
        result = _run_interruptible(run, to_config(args))
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return INTERRUPTED_EXIT
    except tuple(codes) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return next(code for kind, code in codes.items() if isinstance(err, kind))
    print(report(result))
    return 0
