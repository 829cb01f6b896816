"""The driver's log: corpus-prep's own progress lines on stderr, third-party chatter kept out.

Jobs log through loggers under ``corpus_prep`` (``corpus_prep.dedup``, ``corpus_prep.pack``, ...).
``--log-level`` sets their level; ``--quiet`` leaves warnings and errors only. Other libraries
(py4j logs every gateway call at INFO) stay at WARNING whatever the level. Spark's own JVM log
level is separate (``SparkConfig.log_level``, or ``--conf``/log4j).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipelines.config import LogConfig

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ROOT = "corpus_prep"


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    d = LogConfig()
    parser.add_argument("--log-level", default=d.level, choices=LEVELS, type=str.upper,
                        help="level of the job's own progress log on stderr")
    parser.add_argument("--quiet", action="store_true", default=d.quiet,
                        help="log warnings and errors only (no progress lines, no Spark progress bar)")


def log_config(args: argparse.Namespace) -> LogConfig:
    d = LogConfig()
    return LogConfig(level=getattr(args, "log_level", d.level), quiet=getattr(args, "quiet", d.quiet))


class _Stderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each line (it may be replaced after setup: captured, redirected)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


def configure_logging(cfg: LogConfig, stream=None) -> None:
    """One stderr handler on the root logger; ``corpus_prep.*`` at the chosen level, the rest at WARNING."""
    root = logging.getLogger()
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    for old in [h for h in root.handlers if getattr(h, "_corpus_prep", False)]:
        root.removeHandler(old)
    handler._corpus_prep = True
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger(ROOT).setLevel(logging.WARNING if cfg.quiet else cfg.level)
