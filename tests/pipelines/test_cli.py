"""The installed command lines: subcommands with the jobs' own options, --help with defaults, and the wheel behind them."""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile

import pytest

from pipelines.cli import HelpFormatter, run_job
from pipelines.config import DEDUP_SPARK, SparkConfig
from pipelines.dedup.cli import dedup_config, dedup_parser
from pipelines.errors import InputError
from pipelines.pack.cli import pack_config, pack_parser
from pipelines.prepare.cli import prepare_config, prepare_parser, report_config, report_parser
from pipelines.prepare.pipeline import StageFailed
from tests.conftest import ROOT

PARSERS = {"dedup": dedup_parser, "pack": pack_parser, "prepare": prepare_parser, "report": report_parser}


def _help(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    return capsys.readouterr().out


def test_corpus_prep_lists_its_subcommands(capsys):
    from jobs.__main__ import main

    text = _help(main, ["--help"], capsys)
    for name in PARSERS:
        assert f"    {name} " in text
    with pytest.raises(SystemExit) as done:
        main(["nonsense"])
    assert done.value.code == 2 and "invalid choice: 'nonsense'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_subcommands_take_the_jobs_own_options(name, capsys):
    from jobs.__main__ import main

    text = _help(main, [name, "--help"], capsys)
    assert text.startswith(f"usage: corpus-prep {name} ")
    expected = PARSERS[name]()
    expected.prog, expected.formatter_class = f"corpus-prep {name}", HelpFormatter
    assert text == expected.format_help()  # the same parser as jobs/NAME.py, under its new name


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_shows_defaults_and_what_flags_switch(name):
    parser = PARSERS[name]()
    parser.formatter_class = HelpFormatter
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        assert action.help, f"{name} {action.option_strings} has no help"
        shown = formatter._expand_help(action) if action.help else ""
        if action.nargs == 0:  # a flag: its help says what it switches, no default to show
            assert "(default" not in shown, (name, action.option_strings)
        elif action.default is not None:
            assert "default" in shown.lower(), (name, action.option_strings, shown)


def test_prepare_takes_every_option_of_dedup_and_pack_with_the_same_meaning():
    def flags(parser):
        return {flag for action in parser._actions for flag in action.option_strings}

    assert flags(prepare_parser()) == ((flags(dedup_parser()) | flags(pack_parser()) | {"--stages", "--force",
                                                                                         "--pack-seed"})
                                       - {"--overwrite"})
    # --driver-memory given: its default differs on purpose (the dedup job's own 2g; prepare runs
    # pack in the same session, so it keeps the general default)
    dedup = ["--input", "in", "--text-column", "body", "--keep", "longest", "--seed", "5", "--no-verify",
             "--master", "local[2]", "--driver-memory", "3g"]
    pack = ["--packing", "greedy", "--formats", "tfrecord", "--train-tokenizer", "--vocab-size", "400",
            "--no-shuffle-rows", "--target-shard-bytes", "1M"]
    cfg = prepare_config(prepare_parser().parse_args(["--output", "run/", *dedup, *pack, "--pack-seed", "7"]))
    assert cfg.dedup == dedup_config(dedup_parser().parse_args([*dedup, "--output", "run/dedup", "--overwrite"]))
    assert cfg.pack == pack_config(pack_parser().parse_args(["--input", "run/dedup", "--text-column", "body",
                                                             "--output", "run/pack", "--overwrite", "--master",
                                                             "local[2]", "--driver-memory", "3g", *pack, "--seed",
                                                             "7"]))
    defaults = prepare_config(prepare_parser().parse_args(["--output", "run/", "--input", "in", "--train-tokenizer"]))
    assert defaults.dedup.spark.driver_memory == SparkConfig.driver_memory != DEDUP_SPARK.driver_memory


@pytest.mark.parametrize("error,line,code", [
    (StageFailed("pack", RuntimeError("Py4JJavaError\n  at ...\nNo space left on device")),
     "error: stage pack failed: No space left on device", 1),
    (InputError("no files match 'in/*.parquet'"), "error: no files match 'in/*.parquet'", 2),
])
def test_job_errors_end_with_one_line_and_their_exit_status(error, line, code, capsys):
    def run(cfg):
        raise error

    assert run_job(["--output", "run"], report_parser(), report_config, run, str) == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_jobs_usage_keeps_the_script_name(capsys):
    from jobs.dedup import main

    assert "usage: jobs/dedup.py " in _help(main, ["--help"], capsys)
    assert "Jaccard similarity threshold (default: 0.7)" in " ".join(_help(main, ["--help"], capsys).split())


def test_runtime_command_dispatches_to_train_and_generate(capsys):
    from runtime.__main__ import main

    text = _help(main, ["--help"], capsys)
    assert "train" in text and "generate" in text
    assert _help(main, ["train", "--help"], capsys).startswith("usage: corpus-prep-runtime train ")
    assert _help(main, ["generate", "--help"], capsys).startswith("usage: corpus-prep-runtime generate ")


def test_wheel_ships_entry_points_jobs_dataproc_and_only_executor_dependencies(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), ROOT], check=True)
    (wheel,) = tmp_path.glob("corpus_prep-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(info).decode()
        entry_points = zf.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert {"jobs/__main__.py", "jobs/dedup.py", "jobs/pack.py", "jobs/prepare.py", "jobs/report.py",
            "dataproc/commands.py", "dataproc/requirements.txt", "runtime/__main__.py",
            "pipelines/log4j2.properties"} <= names
    assert "corpus-prep = jobs.__main__:main" in entry_points
    assert "corpus-prep-runtime = runtime.__main__:main" in entry_points
    core = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [r for r in core if r.startswith(("datasets", "xxhash", "torch", "apache-airflow"))], core
    assert any(r.startswith("pyspark") for r in core) and any(r.startswith("tokenizers") for r in core)
    extras = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" in line]
    assert any(line.startswith("Requires-Dist: datasets") and 'extra == "dev"' in line for line in extras)
    airflow = [line for line in extras if 'extra == "airflow"' in line]
    assert airflow and not [line for line in airflow if "==" in line.split(";")[0]]  # ranges, not pins
