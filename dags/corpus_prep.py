"""Airflow 3 DAGs running corpus-prep, one task per stage (dedup → pack → report), three ways:

* ``corpus_prep_dataproc``: ``DataprocSubmitJobOperator`` on an existing Dataproc cluster
  (made by ``python -m dataproc create-cluster``; dependencies installed there).
* ``corpus_prep_serverless``: ``DataprocCreateBatchOperator`` on Serverless with the packed environment.
* ``corpus_prep_spark``: ``SparkSubmitOperator`` on a self-managed cluster (connection ``spark_default``).

Each task runs ``prepare.py --stages STAGE`` into the same ``output``: a retried or re-triggered
task finds its verified output and skips the work, so tasks are idempotent. Artifacts come from
``python -m dataproc package`` / ``upload``. Deploy this file together with the ``dataproc/``
package (which holds the command lines and pins shared with the CLI).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # dataproc/ beside dags/

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator  # noqa: E402
from airflow.providers.google.cloud.operators.dataproc import (DataprocCreateBatchOperator,  # noqa: E402
                                                               DataprocSubmitJobOperator)
from airflow.sdk import DAG, Param, chain  # noqa: E402

from dataproc.commands import (ENTRY, ENV_ALIAS, ENV_ARCHIVE, ENV_PYTHON, SERVERLESS_VERSION, WHEEL,  # noqa: E402
                               ClusterShape, Target, batch_properties, prepare_args)

STAGES = ("dedup", "pack", "report")
PARAMS = {
    "input": Param("gs://BUCKET/corpus/", type="string", description="corpus path or glob"),
    "output": Param("gs://BUCKET/runs/corpus-v1", type="string", description="run directory (dedup/, pack/, report.html)"),
    "artifacts": Param("gs://BUCKET/corpus-prep/0.1.0", type="string", description="uploaded dist/ files"),
    "project": Param("PROJECT", type="string"),
    "region": Param("europe-west4", type="string"),
    "cluster": Param(ClusterShape().name, type="string", description="Dataproc cluster (cluster DAG only)"),
    "job_args": Param(["--train-tokenizer"], type="array", description="further jobs/prepare.py options"),
}
TARGET = Target(project="{{ params.project }}", region="{{ params.region }}", artifacts="{{ params.artifacts }}")


def _prepare_args(params: dict, stage: str) -> list[str]:
    return prepare_args(params["input"], params["output"], stage, tuple(params["job_args"]))


def _args(stage: str) -> str:
    """Rendered (natively, as a list) when the task runs, from the run's params."""
    return f"{{{{ params | prepare_args('{stage}') }}}}"


def _dag(dag_id: str, make_task) -> DAG:
    with DAG(dag_id, schedule=None, catchup=False, params=PARAMS, tags=["corpus-prep"], doc_md=__doc__,
             render_template_as_native_obj=True, user_defined_filters={"prepare_args": _prepare_args}) as dag:
        chain(*[make_task(stage) for stage in STAGES])
    return dag


def _submit_job(stage: str) -> DataprocSubmitJobOperator:
    return DataprocSubmitJobOperator(
        task_id=stage, project_id=TARGET.project, region=TARGET.region,
        job={"placement": {"cluster_name": "{{ params.cluster }}"},
             "labels": {"pipeline": "corpus-prep", "stage": stage},
             "pyspark_job": {"main_python_file_uri": TARGET.uri(ENTRY), "python_file_uris": [TARGET.uri(WHEEL)],
                             "args": _args(stage)}})


def _create_batch(stage: str) -> DataprocCreateBatchOperator:
    return DataprocCreateBatchOperator(
        task_id=stage, project_id=TARGET.project, region=TARGET.region,
        # batch ids are single-use: a retry is a new batch (which skips whatever already verified)
        batch_id=f"corpus-prep-{stage}-{{{{ dag_run.run_after.strftime('%Y%m%d%H%M%S') }}}}-{{{{ ti.try_number }}}}",
        batch={"pyspark_batch": {"main_python_file_uri": TARGET.uri(ENTRY), "python_file_uris": [TARGET.uri(WHEEL)],
                                 "archive_uris": [f"{TARGET.uri(ENV_ARCHIVE)}#{ENV_ALIAS}"], "args": _args(stage)},
               "runtime_config": {"version": SERVERLESS_VERSION, "properties": batch_properties(ClusterShape())}})


def _spark_submit(stage: str) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=stage, conn_id="spark_default", application=TARGET.uri(ENTRY), py_files=TARGET.uri(WHEEL),
        archives=f"{TARGET.uri(ENV_ARCHIVE)}#{ENV_ALIAS}", conf={"spark.pyspark.python": ENV_PYTHON},
        name=f"corpus-prep-{stage}", application_args=_args(stage))


dataproc_dag = _dag("corpus_prep_dataproc", _submit_job)
serverless_dag = _dag("corpus_prep_serverless", _create_batch)
spark_dag = _dag("corpus_prep_spark", _spark_submit)
