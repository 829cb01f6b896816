"""Tokenize and pack a corpus into training-ready shards.

    spark-submit jobs/pack.py --input CORPUS --output DIR --seq-len 2048 --train-tokenizer --vocab-size 32000
    python jobs/pack.py --input DEDUP_DIR --output DIR --tokenizer tokenizer.json   # local Spark
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.cli import run_job  # noqa: E402
from pipelines.pack.cli import pack_config, pack_parser  # noqa: E402
from pipelines.pack.pipeline import run_pack  # noqa: E402


def report(result) -> str:
    m = result.manifest
    return json.dumps({"output": result.output, "totals": m["totals"], "stats": m["stats"],
                       "stage_seconds": result.stage_seconds}, indent=2)


def main(argv: list[str] | None = None) -> int:
    return run_job(argv, pack_parser(), pack_config, run_pack, report)


if __name__ == "__main__":
    sys.exit(main())
