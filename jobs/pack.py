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
from pipelines.config import PackConfig  # noqa: E402
from pipelines.io.paths import check_paths  # noqa: E402
from pipelines.pack import warm  # noqa: E402
from pipelines.pack.cli import pack_config, pack_parser  # noqa: E402
from pipelines.pack.tokenizer import load_tokenizer_file  # noqa: E402
from pipelines.spark_session import start_spark  # noqa: E402


def report(result) -> str:
    m = result.manifest
    return json.dumps({"output": result.output, "totals": m["totals"], "stats": m["stats"],
                       "stage_seconds": result.stage_seconds}, indent=2)


def run(cfg: PackConfig):
    """``run_pack(cfg)``, its module imported while Spark starts (:func:`start_spark`)."""
    check_paths(cfg.input.path, cfg.output, cfg.overwrite)  # a bad path or tokenizer file is refused
    given = load_tokenizer_file(cfg.tokenizer) if cfg.tokenizer.path else None  # before Spark starts
    start_spark(cfg.spark, kernels=warm.load_kernels)
    from pipelines.pack.pipeline import run_pack

    return run_pack(cfg, tokenizer=given)


def main(argv: list[str] | None = None) -> int:
    return run_job(argv, pack_parser(), pack_config, run, report)


if __name__ == "__main__":
    sys.exit(main())
