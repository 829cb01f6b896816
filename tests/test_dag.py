"""The Airflow DAGs import cleanly and have one task per stage in order (needs the ``airflow`` extra)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("airflow.sdk", reason="Airflow is an optional extra: pip install '.[airflow]'")
pytest.importorskip("airflow.providers.google.cloud.operators.dataproc")
pytest.importorskip("airflow.providers.apache.spark.operators.spark_submit")

from tests.conftest import ROOT  # noqa: E402

DAGS = {"corpus_prep_dataproc": "DataprocSubmitJobOperator",
        "corpus_prep_serverless": "DataprocCreateBatchOperator",
        "corpus_prep_spark": "SparkSubmitOperator"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.path.join(ROOT, "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_one_task_per_stage_in_order(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert [t.task_id for t in dag.topological_sort()] == ["dedup", "pack", "report"]
    assert dag.get_task("pack").upstream_task_ids == {"dedup"}
    assert dag.get_task("report").upstream_task_ids == {"pack"}
    assert {type(t).__name__ for t in dag.tasks} == {DAGS[dag_id]}


def test_stage_arguments_render_from_params(dagbag):
    dag = dagbag.dags["corpus_prep_dataproc"]
    params = {"input": "gs://b/in", "output": "gs://b/run", "job_args": ["--seq-len", "512", "--train-tokenizer"]}
    env = dag.get_template_env()
    args = env.from_string(dag.get_task("pack").job["pyspark_job"]["args"]).render(params=params)
    assert args == ["--input", "gs://b/in", "--output", "gs://b/run", "--stages", "pack",
                    "--seq-len", "512", "--train-tokenizer"]


def test_serverless_batches_ship_the_packed_environment(dagbag):
    task = dagbag.dags["corpus_prep_serverless"].get_task("dedup")
    assert task.batch["pyspark_batch"]["archive_uris"] == ["{{ params.artifacts }}/corpus_prep_env.tar.gz#env"]
    assert task.batch["runtime_config"]["properties"]["spark.pyspark.python"] == "./env/bin/python"
    assert "{{ ti.try_number }}" in task.batch_id  # a retry is a new batch; the stage skips verified work
