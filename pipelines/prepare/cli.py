"""Command line of ``jobs/prepare.py``: its own options plus every option of ``jobs/dedup.py`` and ``jobs/pack.py``.

The stage parsers are the source of truth (``pipelines.cli``, ``pipelines.pack.cli``); their
actions are adopted here, so a new dedup or pack option appears in ``prepare.py`` by itself.
Options both share (input, Spark settings) appear once; ``--output`` and ``--overwrite`` are
replaced by the run's layout (``OUTPUT/dedup``, ``OUTPUT/pack``); the pack job's ``--seed``
(row shuffling) becomes ``--pack-seed`` because ``--seed`` is the MinHash seed.
"""

from __future__ import annotations

import argparse

from pipelines.cli import JobParser, add_spark_arguments, dedup_config, dedup_parser, spark_config
from pipelines.config import PREPARE_STAGES, PrepareConfig, ReportConfig, SparkConfig, stage_dir
from pipelines.logs import add_logging_arguments
from pipelines.pack.cli import pack_config, pack_parser

RENAMED = {"--seed": "--pack-seed"}
OWN = ("--output", "--overwrite")


def _adopt(parser: argparse.ArgumentParser, group, source: argparse.ArgumentParser, rename: dict) -> None:
    for action in source._actions:
        if isinstance(action, argparse._HelpAction) or set(action.option_strings) & set(OWN):
            continue
        taken = [o for o in action.option_strings if o in parser._option_string_actions]
        if taken and all(o in rename for o in taken):
            action.option_strings = [rename.get(o, o) for o in action.option_strings]
        elif taken:
            continue  # shared with the dedup job (input, Spark settings): the same meaning
        group._add_action(action)


def _stages(text: str) -> tuple[str, ...]:
    chosen = {s.strip() for s in text.split(",") if s.strip()}
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
    _adopt(p, p.add_argument_group("dedup (as jobs/dedup.py)"), dedup_parser(), {})
    _adopt(p, p.add_argument_group("tokenize and pack (as jobs/pack.py)"), pack_parser(), RENAMED)
    p.set_defaults(driver_memory=SparkConfig.driver_memory)  # one session for both jobs: the general default
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
