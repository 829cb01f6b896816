"""Near-duplicate removal job.

    spark-submit jobs/dedup.py --input CORPUS --output DIR [options]
    python jobs/dedup.py --input CORPUS --output DIR [options]   # starts local Spark itself
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.cli import dedup_config, dedup_parser  # noqa: E402
from pipelines.dedup.pipeline import run_dedup  # noqa: E402
from pipelines.io.publish import OutputExists  # noqa: E402
from pipelines.io.readers import InputError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = dedup_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = dedup_config(args)
    except ValueError as err:
        parser.error(str(err))
    try:
        result = run_dedup(cfg)
    except (InputError, OutputExists) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    s = result.stats
    summary = {k: s[k] for k in ("input_records", "documents", "rejected", "empty", "exact_duplicates",
                                 "near_duplicates", "kept", "clusters", "largest_cluster", "bands",
                                 "rows", "cc_rounds")}
    print(json.dumps({"output": result.output, **summary, "stage_seconds": s["stage_seconds"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
