"""Deduplicate, tokenize and pack a corpus end to end, with a report.

    spark-submit jobs/prepare.py --input CORPUS --output RUN_DIR --train-tokenizer [options]
    python jobs/prepare.py --input CORPUS --output RUN_DIR --tokenizer tokenizer.json   # local Spark
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

try:  # installed (a wheel shipped to the cluster) or the source tree
    import pipelines  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.cli import run_job  # noqa: E402
from pipelines.prepare.cli import prepare_config, prepare_parser  # noqa: E402
from pipelines.prepare.pipeline import StageFailed, run_prepare  # noqa: E402
from pipelines.report.console import summary  # noqa: E402
from pipelines.spark_session import under_spark_submit  # noqa: E402


def prepare(cfg):
    quiet = not logging.getLogger("corpus_prep").isEnabledFor(logging.INFO)  # --quiet
    if not under_spark_submit() and not quiet:  # Spark started here: its progress bar (spark-submit: --conf)
        os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--conf spark.ui.showConsoleProgress=true pyspark-shell")
    return run_prepare(cfg)


def main(argv: list[str] | None = None) -> int:
    return run_job(argv, prepare_parser(), prepare_config, prepare, summary, {StageFailed: 1})


if __name__ == "__main__":
    sys.exit(main())
