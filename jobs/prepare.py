"""Deduplicate, tokenize and pack a corpus end to end, with a report.

    spark-submit jobs/prepare.py --input CORPUS --output RUN_DIR --train-tokenizer [options]
    python jobs/prepare.py --input CORPUS --output RUN_DIR --tokenizer tokenizer.json   # local Spark
"""

from __future__ import annotations

import sys
from pathlib import Path

try:  # installed (a wheel shipped to the cluster) or the source tree
    import pipelines  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.cli import run_job  # noqa: E402
from pipelines.prepare.cli import prepare_config, prepare_parser  # noqa: E402
from pipelines.prepare.pipeline import run_prepare  # noqa: E402
from pipelines.report.console import summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_job(argv, prepare_parser(), prepare_config, run_prepare, summary)


if __name__ == "__main__":
    sys.exit(main())
