"""Tokenize and pack a corpus into training-ready shards.

    spark-submit jobs/pack.py --input CORPUS --output DIR --seq-len 2048 --train-tokenizer --vocab-size 32000
    python jobs/pack.py --input DEDUP_DIR --output DIR --tokenizer tokenizer.json   # local Spark
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.io.publish import OutputExists  # noqa: E402
from pipelines.io.readers import InputError  # noqa: E402
from pipelines.pack.cli import pack_config, pack_parser  # noqa: E402
from pipelines.pack.pipeline import run_pack  # noqa: E402
from pipelines.pack.tokenizer import TokenizerError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = pack_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = pack_config(args)
    except ValueError as err:
        parser.error(str(err))
    try:
        result = run_pack(cfg)
    except (InputError, OutputExists, TokenizerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m = result.manifest
    print(json.dumps({"output": result.output, "totals": m["totals"], "stats": m["stats"],
                      "stage_seconds": result.stage_seconds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
