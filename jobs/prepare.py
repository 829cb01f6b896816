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

from pipelines.io.publish import OutputExists  # noqa: E402
from pipelines.io.readers import InputError  # noqa: E402
from pipelines.pack.tokenizer import TokenizerError  # noqa: E402
from pipelines.prepare.cli import prepare_config, prepare_parser  # noqa: E402
from pipelines.prepare.pipeline import PrepareError, StageFailed, run_prepare  # noqa: E402
from pipelines.report.console import summary  # noqa: E402
from pipelines.spark_session import under_spark_submit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = prepare_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = prepare_config(args)
    except ValueError as err:
        parser.error(str(err))
    if not under_spark_submit():  # Spark started here: show its progress bar (spark-submit users pass --conf)
        os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--conf spark.ui.showConsoleProgress=true pyspark-shell")
    try:
        result = run_prepare(cfg)
    except (InputError, OutputExists, TokenizerError, PrepareError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
