"""Command line of ``jobs/prepare.py``: its own options plus every option of ``jobs/dedup.py`` and ``jobs/pack.py``.

The stage jobs' option functions are the source of truth (``pipelines.dedup.cli``,
``pipelines.pack.cli``), so a new dedup or pack option appears in ``prepare.py`` by itself.
Options both share (input, Spark settings, logging) appear once, with dedup's; ``--output`` and
``--overwrite`` are replaced by the run's layout (``OUTPUT/dedup``, ``OUTPUT/pack``); the pack
job's ``--seed`` (row shuffling) becomes ``--pack-seed`` because ``--seed`` is the MinHash seed.
"""

from __future__ import annotations

import argparse

from pipelines.cli import JobParser, add_input_arguments, add_spark_arguments, spark_config
from pipelines.config import PREPARE_STAGES, PrepareConfig, ReportConfig, stage_dir
from pipelines.dedup.cli import add_dedup_arguments, dedup_config
from pipelines.logs import add_logging_arguments
from pipelines.options import comma_list
from pipelines.pack.cli import add_pack_arguments, pack_config


def _stages(text: str) -> tuple[str, ...]:
    chosen = set(comma_list(text))
    unknown = chosen - set(PREPARE_STAGES)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {','.join(PREPARE_STAGES)} (got {text!r})")
    return tuple(s for s in PREPARE_STAGES if s in chosen)


def prepare_parser() -> argparse.ArgumentParser:
    p = JobParser(
        prog="jobs/prepare.py",
        description="Deduplicate, tokenize and pack a corpus into OUTPUT/dedup and OUTPUT/pack, and write "
                    "OUTPUT/report.html. Stages whose verified output exists for the same settings and input "
                    "are skipped.")
    p.add_argument("--output", required=True, help="run directory (dedup/, pack/, report.html)")
    p.add_argument("--stages", type=_stages, default=PREPARE_STAGES,
                   help=f"comma-separated subset of {','.join(PREPARE_STAGES)} (default: all)")
    p.add_argument("--force", action="store_true", help="rerun the chosen stages even if their output verifies")
    dedup = p.add_argument_group("dedup (as jobs/dedup.py)")
    add_input_arguments(dedup)
    add_dedup_arguments(dedup)
    add_spark_arguments(dedup)
    add_logging_arguments(dedup)
    pack = p.add_argument_group("tokenize and pack (as jobs/pack.py)")
    add_pack_arguments(pack, pack, skip={"overwrite"}, flags={"seed": "--pack-seed"})
    return p


def prepare_config(args: argparse.Namespace) -> PrepareConfig:
    output = args.output.rstrip("/")
    values = vars(args)
    dedup = dedup_config(argparse.Namespace(**{**values, "output": stage_dir(output, "dedup"), "overwrite": True}))
    pack = pack_config(argparse.Namespace(**{**values, "input": stage_dir(output, "dedup"), "input_format": "auto",
                                             "output": stage_dir(output, "pack"), "pack__overwrite": True}))
    return PrepareConfig(output=output, dedup=dedup, pack=pack, stages=args.stages, force=args.force,
                         spark=spark_config(args, "corpus-prep"))


def report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobs/report.py",
        description="Write OUTPUT/report.html (and OUTPUT/report/*.png) from the verified dedup and pack outputs of "
                    "an earlier jobs/prepare.py run; the same page as prepare --stages report, without its options.")
    p.add_argument("--output", required=True, help="run directory of jobs/prepare.py (dedup/, pack/)")
    add_spark_arguments(p)
    add_logging_arguments(p)
    return p


def report_config(args: argparse.Namespace) -> ReportConfig:
    return ReportConfig(output=args.output.rstrip("/"), spark=spark_config(args, "corpus-prep-report"))
