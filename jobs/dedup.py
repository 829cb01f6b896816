"""Near-duplicate removal job.

    spark-submit jobs/dedup.py --input CORPUS --output DIR [options]
    python jobs/dedup.py --input CORPUS --output DIR [options]   # starts local Spark itself
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.cli import run_job  # noqa: E402
from pipelines.config import DedupConfig  # noqa: E402
from pipelines.dedup.cli import dedup_config, dedup_parser  # noqa: E402
from pipelines.io.paths import check_paths  # noqa: E402
from pipelines.spark_session import start_spark  # noqa: E402

SUMMARY = ("input_records", "documents", "rejected", "empty", "exact_duplicates", "near_duplicates", "kept",
           "clusters", "largest_cluster", "bands", "rows", "cc_rounds")


def report(result) -> str:
    s = result.stats
    summary = {k: s[k] for k in SUMMARY}
    if "index" in s:  # --against: new documents removed as duplicates of indexed ones, per earlier run
        summary["index_duplicates"] = s["index_duplicates"]
        summary["matched_by_run"] = {run["output"]: run["matched"] for run in s["index"]["runs"]}
    return json.dumps({"output": result.output, **summary, "stage_seconds": s["stage_seconds"]}, indent=2)


def run(cfg: DedupConfig):
    """``run_dedup(cfg)``, its module imported while Spark starts (:func:`start_spark`)."""
    check_paths(cfg.input.path, cfg.output, cfg.overwrite)  # a bad path is refused before Spark starts
    start_spark(cfg.spark)
    from pipelines.dedup.pipeline import run_dedup

    return run_dedup(cfg)


def main(argv: list[str] | None = None) -> int:
    return run_job(argv, dedup_parser(), dedup_config, run, report)


if __name__ == "__main__":
    sys.exit(main())
