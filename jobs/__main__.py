"""``corpus-prep dedup|pack|prepare|report [options]``: the jobs of ``jobs/*.py`` as one installed command.

Each subcommand takes the same options as its script (``corpus-prep dedup --help`` is
``jobs/dedup.py --help``); ``python -m jobs`` is the same command.
"""

from __future__ import annotations

import sys

from pipelines.entry import dispatch

COMMANDS = {
    "dedup": ("jobs.dedup", "remove exact and near-duplicate documents (jobs/dedup.py)"),
    "pack": ("jobs.pack", "tokenize and pack into Parquet/TFRecord/Megatron shards (jobs/pack.py)"),
    "prepare": ("jobs.prepare", "dedup, pack and report end to end, skipping verified stages (jobs/prepare.py)"),
    "report": ("jobs.report", "write the run report of an existing prepare run directory (jobs/report.py)"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("corpus-prep", "corpus-prep: deduplicate, tokenize and pack LLM training corpora on Spark.",
                    COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
