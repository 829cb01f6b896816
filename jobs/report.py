"""The run report of an existing ``jobs/prepare.py`` run directory.

    spark-submit jobs/report.py --output RUN_DIR
    python jobs/report.py --output RUN_DIR   # local Spark
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.cli import run_job  # noqa: E402
from pipelines.prepare.cli import report_config, report_parser  # noqa: E402
from pipelines.prepare.pipeline import run_report  # noqa: E402
from pipelines.report.console import summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_job(argv, report_parser(), report_config, run_report, summary)


if __name__ == "__main__":
    sys.exit(main())
