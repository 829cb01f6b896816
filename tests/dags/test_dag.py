"""The Airflow DAGs: structure, and every task rendered for a sample run down to the argv / job body it submits.

Needs the ``airflow`` extra (``scripts/setup.sh --airflow`` builds ``.venv-airflow`` and ``.ci/run``
runs this file there); skipped without Airflow. Rendering uses each task's own template fields
and the DAG's Jinja environment, as a task run does, with the params of a triggered run; the
spark-submit argv comes from the provider's own hook.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT, optional_import, required

optional_import("airflow.sdk")
optional_import("airflow.providers.google.cloud.operators.dataproc")
optional_import("airflow.providers.apache.spark.operators.spark_submit")

from dataproc import commands  # noqa: E402

DAGS = {"corpus_prep_dataproc": "DataprocSubmitJobOperator",
        "corpus_prep_serverless": "DataprocCreateBatchOperator",
        "corpus_prep_spark": "SparkSubmitOperator"}
STAGES = ("dedup", "pack", "report")
RUN = {"input": "gs://corp/in/*.parquet", "output": "gs://corp/runs/v1", "artifacts": "gs://corp/cp/0.1.0",
       "project": "proj-a", "region": "europe-west4", "cluster": "cp-big",
       "job_args": ["--seq-len", "512", "--train-tokenizer", "--feature-names", "seqio"],
       "against": ["gs://corp/index"], "save_index": "", "update_index": "gs://corp/index",
       "driver_python": "/opt/cp-env/bin/python"}
RUN_AFTER = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
TARGET = commands.Target(RUN["project"], RUN["region"], RUN["artifacts"])


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.path.join(ROOT, "dags"))
    assert bag.import_errors == {}
    return bag


def _args(stage: str) -> list[str]:
    return commands.prepare_args(RUN["input"], RUN["output"], stage, tuple(RUN["job_args"]),
                                 against=tuple(RUN["against"]), update_index=RUN["update_index"])


def _rendered(dag, stage: str, try_number: int = 1):
    """The task as it runs: template fields rendered with the run's params in the DAG's Jinja environment."""
    task = copy.deepcopy(dag.get_task(stage))
    params = copy.deepcopy(dag.params)
    params.update(RUN)
    context = {"params": params.validate(), "dag_run": SimpleNamespace(run_after=RUN_AFTER),
               "ti": SimpleNamespace(try_number=try_number), "task": task, "dag": dag}
    task.render_template_fields(context, jinja_env=dag.get_template_env())
    return task


def _unrendered(value, where="") -> list[str]:
    """Every string under ``value`` that still holds a Jinja template."""
    if isinstance(value, str):
        return [f"{where}: {value}"] if "{{" in value or "{%" in value else []
    if isinstance(value, dict):
        return [u for k, v in value.items() for u in _unrendered(v, f"{where}.{k}")]
    if isinstance(value, (list, tuple)):
        return [u for i, v in enumerate(value) for u in _unrendered(v, f"{where}[{i}]")]
    return []


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_one_task_per_stage_in_order(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert [t.task_id for t in dag.topological_sort()] == list(STAGES)
    assert dag.get_task("pack").upstream_task_ids == {"dedup"}
    assert dag.get_task("report").upstream_task_ids == {"pack"}
    assert {type(t).__name__ for t in dag.tasks} == {DAGS[dag_id]}


@pytest.mark.parametrize("dag_id", sorted(DAGS))
@pytest.mark.parametrize("stage", STAGES)
def test_no_template_survives_rendering(dagbag, dag_id, stage):
    """Not in a templated field, nor in any other attribute the operator submits (the untemplated ``archives`` bug)."""
    task = _rendered(dagbag.dags[dag_id], stage)
    attributes = {k: v for k, v in vars(task).items() if k not in ("doc_md", "_dag", "dag", "params")}
    assert _unrendered(attributes) == []


@pytest.mark.parametrize("stage", STAGES)
def test_dataproc_job_body(dagbag, stage):
    task = _rendered(dagbag.dags["corpus_prep_dataproc"], stage)
    assert (task.project_id, task.region) == (RUN["project"], RUN["region"])
    assert task.job == {
        "placement": {"cluster_name": RUN["cluster"]},
        "labels": {"pipeline": "corpus-prep", "stage": stage},
        "pyspark_job": {"main_python_file_uri": "gs://corp/cp/0.1.0/prepare.py",
                        "python_file_uris": ["gs://corp/cp/0.1.0/corpus_prep-0.1.0-py3-none-any.whl"],
                        "args": _args(stage)}}
    # the same job as `python -m dataproc submit` prints
    argv = commands.submit_job(TARGET, RUN["cluster"], _args(stage))
    assert argv[argv.index("--") + 1:] == task.job["pyspark_job"]["args"]
    assert argv[5] == task.job["pyspark_job"]["main_python_file_uri"]


def test_a_scheduled_run_chains_through_the_index(dagbag):
    """The run's index params reach the dedup stage as the job's own options."""
    args = _rendered(dagbag.dags["corpus_prep_dataproc"], "dedup").job["pyspark_job"]["args"]
    assert args[args.index("--against") + 1] == args[args.index("--update-index") + 1] == "gs://corp/index"
    assert "--save-index" not in args


@pytest.mark.parametrize("stage", STAGES)
def test_serverless_batch_body(dagbag, stage):
    task = _rendered(dagbag.dags["corpus_prep_serverless"], stage, try_number=3)
    assert task.batch_id == f"corpus-prep-{stage}-20260304050607-3"  # a retry is a new batch; verified work is skipped
    assert (task.project_id, task.region) == (RUN["project"], RUN["region"])
    assert task.batch == {
        "pyspark_batch": {"main_python_file_uri": "gs://corp/cp/0.1.0/prepare.py",
                          "python_file_uris": ["gs://corp/cp/0.1.0/corpus_prep-0.1.0-py3-none-any.whl"],
                          "archive_uris": ["gs://corp/cp/0.1.0/corpus_prep_env.tar.gz#env"],
                          "args": _args(stage)},
        "runtime_config": {"version": "3.0", "properties": commands.batch_properties(commands.ClusterShape())}}
    props = task.batch["runtime_config"]["properties"]
    assert props["spark.pyspark.python"] == props["spark.pyspark.driver.python"] == "./env/bin/python"


@pytest.mark.parametrize("stage", STAGES)
def test_spark_submit_argv(dagbag, stage, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", "spark://spark-master:7077")
    task = _rendered(dagbag.dags["corpus_prep_spark"], stage)
    argv = task._get_hook()._build_spark_submit_command(task.application)
    assert argv == [
        "spark-submit", "--master", "spark://spark-master:7077",
        "--conf", "spark.archives=gs://corp/cp/0.1.0/corpus_prep_env.tar.gz#env",
        "--conf", "spark.pyspark.python=./env/bin/python",
        "--conf", "spark.pyspark.driver.python=/opt/cp-env/bin/python",
        "--py-files", "gs://corp/cp/0.1.0/corpus_prep-0.1.0-py3-none-any.whl",
        "--name", f"corpus-prep-{stage}",
        "gs://corp/cp/0.1.0/prepare.py", *_args(stage)]


def test_dag_file_imports_the_installed_package(tmp_path):
    """Deployed alone into a DAGs folder (as on Composer), the file finds ``dataproc`` installed, not beside it."""
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(os.path.join(ROOT, "dags", "corpus_prep.py"), dags)
    probe = ("from airflow.dag_processing.dagbag import DagBag; "
             f"bag = DagBag(dag_folder={str(dags)!r}); "
             "assert not bag.import_errors, bag.import_errors; print(sorted(bag.dags))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing but what is installed
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode and "No module named 'dataproc'" in proc.stderr:
        required(pytest.skip, "the project is not installed here (scripts/setup.sh --airflow installs it)", "airflow")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(sorted(DAGS))
