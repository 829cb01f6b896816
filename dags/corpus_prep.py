"""Airflow 3 DAGs running corpus-prep, one task per stage (dedup → pack → report), three ways:

* ``corpus_prep_dataproc``: ``DataprocSubmitJobOperator`` on an existing Dataproc cluster
  (made by ``python -m dataproc create-cluster``; dependencies installed there).
* ``corpus_prep_serverless``: ``DataprocCreateBatchOperator`` on Serverless with the packed environment.
* ``corpus_prep_spark``: ``SparkSubmitOperator`` on a self-managed cluster (connection ``spark_default``).

Each task runs ``prepare.py --stages STAGE`` into the same ``output``: a retried or re-triggered
task finds its verified output and skips the work, so tasks are idempotent. Artifacts come from
``python -m dataproc package`` / ``upload``.

Monthly batches chain through an index (``docs/operations.md``, "Incremental runs"): the first
run sets ``save_index``; each later one sets ``against`` to that index and ``update_index`` to the
same directory, and removes what earlier runs already kept. A retried run skips its verified
output, and a rerun into the same ``output`` replaces its own part of the index.

Deploy: install the project's wheel into the Airflow environment (``pip install
corpus_prep-0.1.0-py3-none-any.whl`` with ``--no-deps``, or as a Composer PyPI package) and copy
this file into the DAGs folder; it imports the installed ``dataproc`` package, which holds the
command lines and pins shared with the CLI.
"""

from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.google.cloud.operators.dataproc import DataprocCreateBatchOperator, DataprocSubmitJobOperator
from airflow.sdk import DAG, Param, chain

from dataproc.commands import (ENTRY, ENV_ALIAS, ENV_ARCHIVE, ENV_PYTHON, SERVERLESS_VERSION, WHEEL, ClusterShape,
                               Target, batch_properties, prepare_args)

STAGES = ("dedup", "pack", "report")
PARAMS = {
    "input": Param("gs://BUCKET/corpus/", type="string", description="corpus path or glob"),
    "output": Param("gs://BUCKET/runs/corpus-v1", type="string", description="run directory (dedup/, pack/, report.html)"),
    "artifacts": Param("gs://BUCKET/corpus-prep/0.1.0", type="string", description="uploaded dist/ files"),
    "project": Param("PROJECT", type="string"),
    "region": Param("europe-west4", type="string"),
    "cluster": Param(ClusterShape().name, type="string", description="Dataproc cluster (cluster DAG only)"),
    "against": Param([], type="array", description="indexes of earlier runs to deduplicate against (--against)"),
    "save_index": Param("", type="string", description="write this run's index here (--save-index; empty: none)"),
    "update_index": Param("", type="string", description="write the --against indexes and this run's as one "
                                                          "(--update-index; may be one of them: a growing index)"),
    "job_args": Param(["--train-tokenizer"], type="array", description="further jobs/prepare.py options"),
    "driver_python": Param("/opt/corpus-prep-env/bin/python", type="string",
                           description="Spark DAG only: the driver's interpreter. In client mode an unpacked copy of "
                                       "corpus_prep_env.tar.gz on the submitting host; in cluster deploy mode "
                                       "./env/bin/python (the shipped archive)"),
}
TARGET = Target(project="{{ params.project }}", region="{{ params.region }}", artifacts="{{ params.artifacts }}")


def _prepare_args(params: dict, stage: str) -> list[str]:
    return prepare_args(params["input"], params["output"], stage, tuple(params["job_args"]),
                        against=tuple(params["against"]), save_index=params["save_index"] or None,
                        update_index=params["update_index"] or None)


def _args(stage: str) -> str:
    """Rendered (natively, as a list) when the task runs, from the run's params."""
    return f"{{{{ params | prepare_args('{stage}') }}}}"


# Native rendering (``args`` must render to a list) literal-evaluates every rendered string, so a
# constant like "3.0" or "4" would reach the Dataproc API as a number. Constants that must stay
# strings are handed over whole, as one macro that renders to the object itself.
MACROS = {"serverless_runtime": {"version": SERVERLESS_VERSION, "properties": batch_properties(ClusterShape())}}


def _dag(dag_id: str, make_task) -> DAG:
    with DAG(dag_id, schedule=None, catchup=False, params=PARAMS, tags=["corpus-prep"], doc_md=__doc__,
             render_template_as_native_obj=True, user_defined_filters={"prepare_args": _prepare_args},
             user_defined_macros=MACROS) as dag:
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
               "runtime_config": "{{ serverless_runtime }}"})


def _spark_submit(stage: str) -> SparkSubmitOperator:
    # The operator does not template its ``archives`` argument; ``spark.archives`` (what --archives
    # sets) goes through ``conf``, which it does template.
    return SparkSubmitOperator(
        task_id=stage, conn_id="spark_default", application=TARGET.uri(ENTRY), py_files=TARGET.uri(WHEEL),
        conf={"spark.archives": f"{TARGET.uri(ENV_ARCHIVE)}#{ENV_ALIAS}", "spark.pyspark.python": ENV_PYTHON,
              "spark.pyspark.driver.python": "{{ params.driver_python }}"},
        name=f"corpus-prep-{stage}", application_args=_args(stage))


dataproc_dag = _dag("corpus_prep_dataproc", _submit_job)
serverless_dag = _dag("corpus_prep_serverless", _create_batch)
spark_dag = _dag("corpus_prep_spark", _spark_submit)
