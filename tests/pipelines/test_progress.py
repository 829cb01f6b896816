"""Progress a person can follow: one start and one end line per stage, in order, and Spark jobs named by stage."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from pipelines.config import InputConfig, LogConfig, PackConfig, TokenizerConfig
from pipelines.logs import configure_logging
from pipelines.pack.pipeline import run_pack
from pipelines.spark_session import LOG_CONFIG, jvm_log_options
from pipelines.timing import StageTimer
from tests.conftest import ROOT
from tests.pipelines.dedup.dedup_helpers import dedup

SAMPLE = os.path.join(ROOT, "samples", "hf_public_repos_sample.parquet")
DEDUP_STAGES = ["read", "signatures", "exact", "lsh", "verify", "components", "survivors", "write", "check",
                "report", "publish"]
PACK_STAGES = ["tokenizer", "tokenize", "pack", "publish"]
LINE = re.compile(r"^(?P<job>\w+) (?P<stage>[\w-]+): (?P<event>started|done in (?P<s>[\d.]+) s)(?P<rest>.*)$")


def _stage_events(caplog, job: str) -> list[tuple[str, str, str]]:
    events = []
    for record in caplog.records:
        match = LINE.match(record.getMessage())
        if match and match["job"] == job:
            assert record.levelno == logging.INFO and record.name == f"corpus_prep.{job}"
            events.append((match["stage"], "start" if match["event"] == "started" else "end", match["rest"]))
    return events


def _assert_each_stage_once_in_order(events, stages):
    assert [(s, e) for s, e, _ in events] == [(s, e) for s in stages for e in ("start", "end")]


def _jobs_in_group(spark, group: str) -> list[int]:
    return list(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_dedup_logs_every_stage_once_in_order_with_rows_and_cc_rounds(spark, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="corpus_prep")
    before = spark.sparkContext.getLocalProperty("spark.jobGroup.id")
    stats = dedup(spark, SAMPLE, tmp_path / "out").stats
    events = _stage_events(caplog, "dedup")
    _assert_each_stage_once_in_order(events, DEDUP_STAGES)
    ends = {stage: rest for stage, event, rest in events if event == "end"}
    assert ends["signatures"] == f" (rows out {stats['documents']:,}, empty {stats['empty']:,})"
    assert ends["check"].startswith(f" (rows in {stats['documents']:,}, rows out {stats['kept']:,}, ")
    assert f"exact_duplicates {stats['exact_duplicates']}" in ends["check"]
    assert f"rounds {stats['cc_rounds']}" in ends["components"]
    assert f"rows out {stats['candidate_edges']:,}" in ends["lsh"]
    assert f"rejected {stats['rejected']}" in ends["read"]
    # one line per connected-components round (round 0: the input graph), with its edge count
    rounds = [m for m in (re.match(r"dedup components round (\d+): ([\d,]+) edges", r.getMessage())
                          for r in caplog.records) if m]
    assert [int(m[1]) for m in rounds] == list(range(stats["cc_rounds"] + 1))
    assert int(rounds[0][2].replace(",", "")) == stats["verified_edges"] > 0
    # the Spark UI and the Dataproc job page name the stage each job belongs to
    for stage in ("read", "signatures", "lsh", "verify", "components", "write", "check"):
        assert _jobs_in_group(spark, f"corpus-prep.dedup.{stage}"), stage
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == before  # restored after the run


def test_pack_logs_every_stage_once_in_order(spark, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="corpus_prep")
    cfg = PackConfig(input=InputConfig(path=SAMPLE), output=str(tmp_path / "packed"), seq_len=128, num_shards=2,
                     tokenizer=TokenizerConfig(train=True, vocab_size=400), formats=("parquet",))
    manifest = run_pack(cfg, spark=spark).manifest
    events = _stage_events(caplog, "pack")
    _assert_each_stage_once_in_order(events, PACK_STAGES)
    ends = {stage: rest for stage, event, rest in events if event == "end"}
    assert ends["tokenize"] == (f" (rows in {manifest['stats']['input_documents']:,}, rows out "
                                f"{manifest['stats']['documents']:,}, tokens {manifest['totals']['tokens']:,})")
    assert ends["pack"] == (f" (rows in {manifest['stats']['documents']:,}, rows out "
                            f"{manifest['totals']['rows']:,}, shards 2)")
    for stage in ("tokenizer", "tokenize", "pack"):
        assert _jobs_in_group(spark, f"corpus-prep.pack.{stage}"), stage


def test_failed_stage_logs_a_warning_and_restores_the_enclosing_job_group(spark, caplog):
    caplog.set_level(logging.INFO, logger="corpus_prep")
    before = spark.sparkContext.getLocalProperty("spark.jobGroup.id")
    outer, inner = StageTimer("prepare", spark), StageTimer("dedup", spark)
    with outer.stage("dedup"):
        with pytest.raises(ZeroDivisionError):
            with inner.stage("signatures"):
                assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == "corpus-prep.dedup.signatures"
                1 / 0
        assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == "corpus-prep.prepare.dedup"
        assert spark.sparkContext.getLocalProperty("spark.job.description") == "corpus-prep prepare dedup"
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == before
    failed = [r for r in caplog.records if "failed after" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert failed[0].getMessage().startswith("dedup signatures: failed after")
    assert set(inner.seconds) == {"signatures"} and set(outer.seconds) == {"dedup"}


def test_a_failed_pack_run_leaves_no_stage_label_behind(spark, tmp_path, caplog, monkeypatch):
    import pipelines.pack.pipeline as pack_pipeline
    from pipelines.pack.tokenizer import TokenizerError

    def failing_training(*args, **kwargs):
        raise TokenizerError("no text to train on")

    # bad settings are refused before Spark starts, so a failure inside the stage is made here
    monkeypatch.setattr(pack_pipeline, "train_tokenizer", failing_training)
    caplog.set_level(logging.INFO, logger="corpus_prep")
    spark.sparkContext.setJobGroup("caller", "the caller's own label")
    try:
        cfg = PackConfig(input=InputConfig(path=SAMPLE), output=str(tmp_path / "packed"), seq_len=128,
                         tokenizer=TokenizerConfig(train=True, vocab_size=400))
        with pytest.raises(TokenizerError):  # fails inside the tokenizer stage
            run_pack(cfg, spark=spark)
        assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == "caller"
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        spark.sparkContext.setLocalProperty("spark.job.description", None)
    failed = [r.getMessage() for r in caplog.records if "failed after" in r.getMessage()]
    assert len(failed) == 1 and failed[0].startswith("pack tokenizer: failed after") and "TokenizerError" in failed[0]


@pytest.mark.parametrize("cfg,shown", [(LogConfig(), {"INFO", "WARNING"}), (LogConfig(quiet=True), {"WARNING"}),
                                       (LogConfig(level="DEBUG"), {"DEBUG", "INFO", "WARNING"})])
def test_log_level_and_quiet(cfg, shown):
    stream = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("corpus_prep").level)
    try:
        configure_logging(cfg, stream)
        for level in ("DEBUG", "INFO", "WARNING"):
            logging.getLogger("corpus_prep.dedup").log(getattr(logging, level), "from corpus-prep at %s", level)
        logging.getLogger("py4j.clientserver").info("third-party chatter")
    finally:
        for handler in root.handlers[:]:
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
        logging.getLogger("corpus_prep").setLevel(before[2])
    lines = stream.getvalue().splitlines()
    assert {line.split()[1] for line in lines} == shown
    assert all("corpus_prep.dedup: from corpus-prep at" in line for line in lines)


def test_a_quiet_job_prints_its_summary_and_no_progress(tmp_path):
    """The README's command under ``--quiet``: the summary on stdout, and on stderr neither progress
    lines nor Spark's progress bar, which PySpark's launcher turns on unless told otherwise, nor
    the start-up notes ``pipelines/log4j2.properties`` keeps out. Run as a user runs it, in a fresh
    process without the test session's launch settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_SUBMIT"))}
    run = subprocess.run([sys.executable, os.path.join(ROOT, "jobs", "dedup.py"), "--input", SAMPLE,
                          "--output", str(tmp_path / "out"), "--quiet"],
                         env={**env, "PYTHONPATH": ROOT}, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["kept"] > 0
    assert "[Stage " not in run.stderr
    assert not [line for line in run.stderr.splitlines() if "corpus_prep" in line]
    assert not [line for line in run.stderr.splitlines()
                if "log4j profile" in line or "NativeCodeLoader" in line or "loopback address" in line]


def test_a_log4j2_file_in_sparks_configuration_directory_wins_over_the_jobs(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARK_HOME", raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert jvm_log_options() == f" -Dlog4j2.configurationFile={LOG_CONFIG}"
    (tmp_path / "spark-defaults.conf").write_text("")
    assert jvm_log_options() == f" -Dlog4j2.configurationFile={LOG_CONFIG}"
    (tmp_path / "log4j2.properties").write_text("rootLogger.level = info\n")
    assert jvm_log_options() == ""
