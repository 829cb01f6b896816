"""Faults during a dedup run: lost executors, failed tasks, a killed driver, corrupt checkpoints.

Each fault is real: the job runs as ``python jobs/dedup.py`` in its own process (its own Spark
master), and the test kills an executor JVM, a busy Python worker or the whole driver process
group at a point it detects from the files the job has committed. Every run must end with
exactly the output of an undisturbed run (``local[2]`` in this process).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pyspark
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from benchmarks.synthetic_corpus import generate
from pipelines.dedup.checkpoints import Checkpoints
from pipelines.io.publish import OutputDir
from tests.conftest import ROOT
from tests.pipelines.dedup.dedup_helpers import dedup, read_rows

JOB = os.path.join(ROOT, "jobs", "dedup.py")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "corpus"
    path.mkdir()
    docs = generate(n_families=500, copies=3, short_docs=50, exact_families=50, boilerplate_families=30, seed=11)
    for k in range(4):
        pq.write_table(pa.table({"content": docs.texts[k::4]}), path / f"part-{k}.parquet")
    return path


@pytest.fixture(scope="module")
def reference(spark, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    dedup(spark, corpus, out)
    return out


def assert_same_output(out, reference):
    for table in ("data", "duplicates"):
        assert read_rows(out / table) == read_rows(reference / table), table
    assert (out / "_SUCCESS").exists()
    assert not glob.glob(str(out.parent / f".{out.name}.staging-*")), "staging left behind"


def start_job(corpus, out, master, log):
    env = dict(os.environ, PYTHONPATH=ROOT, PYSPARK_PYTHON=sys.executable)
    cmd = [sys.executable, JOB, "--input", str(corpus), "--output", str(out), "--master", master,
           "--shuffle-partitions", "4", "--driver-memory", "1g"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"), env=env,
                            start_new_session=True, cwd=ROOT)


def work_dir(out):
    found = glob.glob(str(out.parent / f".{out.name}.staging-*" / "_work"))
    return found[0] if found else None


def wait_for(condition, proc, timeout=300.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"job exited (rc {proc.returncode}) before {what}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def started(out, name):
    return lambda: (work := work_dir(out)) is not None and os.path.exists(os.path.join(work, name))


def committed(out, name):
    return lambda: (work := work_dir(out)) is not None and os.path.exists(os.path.join(work, name, "_COMMITTED"))


def finish(proc, log, timeout=900):
    rc = proc.wait(timeout=timeout)
    text = open(log, errors="replace").read()
    assert rc == 0, text[-3000:]
    return text


def test_checkpoint_is_reused_only_when_intact(spark, tmp_path):
    """A committed checkpoint is reused; a truncated, altered or uncommitted one is recomputed."""
    df = spark.range(3000).selectExpr("id", "id * 3 AS x").repartition(3)
    expected = sorted(tuple(r) for r in df.collect())

    def rerun(source):
        out = OutputDir(spark, str(tmp_path / "out"), False, run_key="fixed")
        checkpoints = Checkpoints(spark, out)
        got = checkpoints(source, "t")
        return out, checkpoints, sorted(tuple(r) for r in got.collect())

    out, first, got = rerun(df)
    assert not out.resumed and got == expected and first.reused == first.discarded == []
    out, again, got = rerun(df.filter("false"))  # reused: the (empty) new plan is never run
    assert out.resumed and again.reused == ["t"] and got == expected
    parts = sorted(glob.glob(str(tmp_path / ".out.staging-fixed" / "_work" / "t" / "part-*")))
    truncated = open(parts[0], "rb").read()
    open(parts[0], "wb").write(truncated[: len(truncated) // 2])
    _, broken, got = rerun(df)
    assert broken.discarded == ["t"] and got == expected
    parts = sorted(glob.glob(str(tmp_path / ".out.staging-fixed" / "_work" / "t" / "part-*")))
    table = pq.read_table(parts[0])
    pq.write_table(table.set_column(1, "x", pa.array([v + 1 for v in table.column("x").to_pylist()])), parts[0])
    _, altered, got = rerun(df)  # same row count, readable, different content
    assert altered.discarded == ["t"] and got == expected
    os.remove(str(tmp_path / ".out.staging-fixed" / "_work" / "t" / "_COMMITTED"))
    _, uncommitted, got = rerun(df)  # the crash hit the write: files but no marker
    assert uncommitted.discarded == ["t"] and got == expected


def test_checkpoint_counts_are_observed_on_the_write_and_kept_in_its_marker(spark, tmp_path):
    """The counts a stage asks of a checkpoint come with it, written or reused; a marker without
    them (an earlier release's) does not commit the checkpoint for a stage that needs them."""
    df = spark.range(3000).selectExpr("id", "id % 7 AS x").repartition(3)
    counts = {"sevens": F.count_if(F.col("x") == 0), "big": F.count_if(F.col("id") >= 2900)}
    expected = {"sevens": 429, "big": 100}

    def rerun(source, asked):
        out = OutputDir(spark, str(tmp_path / "out"), False, run_key="fixed")
        checkpoints = Checkpoints(spark, out)
        checkpoints(source, "t", asked)
        return checkpoints

    assert rerun(df, counts).counts["t"] == expected
    reused = rerun(df.filter("false"), counts)  # the (empty) new plan is never run
    assert reused.reused == ["t"] and reused.counts["t"] == expected
    more = {**counts, "odd": F.count_if(F.col("id") % 2 == 1)}
    recomputed = rerun(df, more)
    assert recomputed.reused == recomputed.discarded == [] and recomputed.counts["t"] == {**expected, "odd": 1500}


def test_checkpoints_are_written_without_dictionary_pages(spark, tmp_path):
    """Checkpoint columns are ids, hashes and signatures, nearly all distinct: the writer is told
    not to build a dictionary per page only to drop it. A table of repeated values, which Parquet
    would otherwise dictionary-encode, shows that the option reaches the writer."""
    df = spark.range(3000).selectExpr("id % 3 AS id", "repeat('x', 100) AS text").repartition(2)
    Checkpoints(spark, OutputDir(spark, str(tmp_path / "out"), False, run_key="fixed"))(df, "t")
    parts = glob.glob(str(tmp_path / ".out.staging-fixed" / "_work" / "t" / "part-*.parquet"))
    footers = [pq.ParquetFile(part).metadata for part in parts]
    encodings = {encoding for footer in footers for group in range(footer.num_row_groups)
                 for column in range(footer.num_columns)
                 for encoding in footer.row_group(group).column(column).encodings}
    assert parts and encodings and not encodings & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}, encodings


@pytest.mark.slow
def test_driver_crash_publishes_nothing_and_rerun_resumes_to_identical_output(corpus, reference, tmp_path):
    out, log = tmp_path / "out", tmp_path / "job.log"
    proc = start_job(corpus, out, "local[2]", log)
    wait_for(committed(out, "cc-input"), proc, what="the cc-input checkpoint")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    work = work_dir(out)
    # damage two committed checkpoints: a truncated file, a missing file
    part = sorted(glob.glob(os.path.join(work, "signatures", "part-*")))[0]
    os.truncate(part, os.path.getsize(part) // 3)
    os.remove(sorted(glob.glob(os.path.join(work, "scored", "part-*")))[0])

    finish(start_job(corpus, out, "local[2]", log), log)
    assert_same_output(out, reference)
    resumed = json.loads((out / "stats.json").read_text())["resumed"]
    assert resumed["from_earlier_run"]
    assert {"exact", "candidates", "cc-input"} <= set(resumed["checkpoints_reused"])
    assert {"signatures", "scored"} <= set(resumed["checkpoints_discarded"])


def _cmdline(process):
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # exited (or a zombie) since it was listed
        return ""


def _executors(proc):
    return [p for p in psutil.Process(proc.pid).children(recursive=True)
            if "CoarseGrainedExecutorBackend" in _cmdline(p)]


@pytest.mark.slow
def test_executor_killed_during_lsh_gives_the_undisturbed_output(corpus, reference, tmp_path):
    # local-cluster executors run in SPARK_HOME/work/APP-ID; remove the ones this test creates
    spark_work = os.path.join(os.path.dirname(pyspark.__file__), "work")
    before = set(os.listdir(spark_work)) if os.path.isdir(spark_work) else set()
    out, log = tmp_path / "out", tmp_path / "job.log"
    proc = start_job(corpus, out, "local-cluster[2,1,1024]", log)
    try:
        wait_for(started(out, "candidates"), proc, what="the LSH stage")
        executors = wait_for(lambda: len(_executors(proc)) == 2 and _executors(proc), proc, what="2 executors")
        at_kill = sorted(os.listdir(work_dir(out)))
        executors[0].kill()
        text = finish(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for app in set(os.listdir(spark_work)) - before if os.path.isdir(spark_work) else ():
            shutil.rmtree(os.path.join(spark_work, app), ignore_errors=True)
    assert "survivors" not in at_kill and "candidates" in at_kill
    assert re.search(r"Lost executor|ExecutorLostFailure", text), text[-3000:]
    assert_same_output(out, reference)


def _busy_python_worker(proc):
    """A forked Python worker (child of the worker daemon, whose last argument is the worker module
    ``pyspark.worker``) that is using CPU, i.e. running a task."""
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            parent = p.parent()
            if parent is not None and "pyspark.worker" in _cmdline(parent) and p.cpu_percent(interval=0.1) > 20:
                return p
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_task_killed_on_first_attempt_is_retried_with_the_same_output(corpus, reference, tmp_path):
    out, log = tmp_path / "out", tmp_path / "job.log"
    proc = start_job(corpus, out, "local[2,3]", log)
    wait_for(started(out, "signatures"), proc, what="the signature stage")
    wait_for(lambda: _busy_python_worker(proc), proc, what="a busy Python worker").kill()
    text = finish(proc, log)
    assert re.search(r"Lost task .*\(TID \d+\)", text), text[-3000:]
    assert_same_output(out, reference)
