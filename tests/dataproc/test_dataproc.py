"""The gcloud and spark-submit command lines, exactly as they would run (nothing reaches a cloud)."""

from __future__ import annotations

import shlex

import pytest

from dataproc import commands
from dataproc.__main__ import main
from pipelines.config import IndexConfig
from pipelines.prepare.cli import prepare_config, prepare_parser

TARGET = commands.Target("proj", "europe-west4", "gs://bkt/corpus-prep/0.1.0/")
PINS = "pyarrow==26.0.1,numpy==2.4.6,scipy==1.17.1,numba==0.68.1,pandas==2.3.3,tokenizers==0.23.3,matplotlib==3.11.2"


def test_requirements_are_exact_pins_without_pyspark():
    pins = commands.pinned_requirements()
    assert ",".join(pins) == PINS
    assert all("==" in p for p in pins) and not any(p.startswith("pyspark") for p in pins)


def test_create_cluster_installs_pins_and_sizes_executors():
    argv = commands.create_cluster(TARGET, commands.ClusterShape(num_workers=8))
    assert argv == [
        "gcloud", "dataproc", "clusters", "create", "corpus-prep", "--project=proj", "--region=europe-west4",
        "--image-version=3.0-debian12", "--master-machine-type=n2-highmem-8",
        "--worker-machine-type=n2-highmem-16", "--num-workers=8", "--num-worker-local-ssds=2", "--max-idle=30m",
        "--properties=^#^dataproc:pip.packages=" + PINS
        + "#spark:spark.executor.cores=4#spark:spark.executor.memory=18g#spark:spark.executor.memoryOverhead=9g"
          "#spark:spark.sql.shuffle.partitions=384#spark:spark.sql.adaptive.enabled=true"
          "#spark:spark.sql.adaptive.advisoryPartitionSizeInBytes=128m#spark:spark.sql.files.maxPartitionBytes=256m"]


def test_executor_memory_fits_the_worker():
    for machine, workers in (("n2-standard-8", 2), ("n2-highmem-32", 10), ("e2-highcpu-16", 3)):
        props = commands.spark_properties(commands.ClusterShape(worker_machine_type=machine, num_workers=workers))
        vcpus = int(machine.rsplit("-", 1)[1])
        per_gb = {"standard": 4, "highmem": 8, "highcpu": 1}[machine.split("-")[1]]
        executors = vcpus // 4
        used = executors * (int(props["spark.executor.memory"][:-1]) + int(props["spark.executor.memoryOverhead"][:-1]))
        assert 0 < used <= 0.85 * vcpus * per_gb
        assert props["spark.sql.shuffle.partitions"] == str(3 * workers * vcpus)
    with pytest.raises(ValueError, match="cannot size"):
        commands.spark_properties(commands.ClusterShape(worker_machine_type="a3-megagpu-8g"))


def test_submit_job_ships_the_wheel_and_passes_job_args_after_separator():
    argv = commands.submit_job(TARGET, "c1", commands.prepare_args("gs://in/*.parquet", "gs://out/run", "dedup"),
                               labels={"stage": "dedup"})
    assert argv == ["gcloud", "dataproc", "jobs", "submit", "pyspark", "gs://bkt/corpus-prep/0.1.0/prepare.py",
                    "--project=proj", "--region=europe-west4", "--cluster=c1",
                    "--py-files=gs://bkt/corpus-prep/0.1.0/corpus_prep-0.1.0-py3-none-any.whl", "--labels=stage=dedup",
                    "--", "--input", "gs://in/*.parquet", "--output", "gs://out/run", "--stages", "dedup"]


def test_prepare_args_carry_the_index_options_to_the_dedup_stage():
    args = commands.prepare_args("gs://in/02", "gs://out/02", "dedup", ("--train-tokenizer",),
                                 against=("gs://idx/01", "gs://idx/extra"), save_index="gs://idx/02")
    cfg = prepare_config(prepare_parser().parse_args(args))
    assert cfg.dedup.index == IndexConfig(against=("gs://idx/01", "gs://idx/extra"), save="gs://idx/02")
    assert commands.prepare_args("gs://in", "gs://out") == ["--input", "gs://in", "--output", "gs://out"]


def test_batch_runs_the_packed_environment_on_runtime_3():
    argv = commands.submit_batch(TARGET, "cp-1", ["--input", "gs://in", "--output", "gs://out"])
    assert argv[:11] == ["gcloud", "dataproc", "batches", "submit", "pyspark", "gs://bkt/corpus-prep/0.1.0/prepare.py",
                         "--project=proj", "--region=europe-west4", "--batch=cp-1", "--version=3.0",
                         "--py-files=gs://bkt/corpus-prep/0.1.0/corpus_prep-0.1.0-py3-none-any.whl"]
    assert argv[11] == "--archives=gs://bkt/corpus-prep/0.1.0/corpus_prep_env.tar.gz#env"
    props = dict(p.split("=", 1) for p in argv[12].removeprefix("--properties=^#^").split("#"))
    assert props["spark.pyspark.python"] == props["spark.pyspark.driver.python"] == "./env/bin/python"
    assert props["spark.executor.memoryOverhead"] == "9g"
    assert argv[13:] == ["--", "--input", "gs://in", "--output", "gs://out"]


def test_spark_submit_for_self_managed_clusters():
    argv = commands.spark_submit("spark://m:7077", "dist", "/opt/env/bin/python", ["--input", "x", "--output", "y"])
    assert argv == ["spark-submit", "--master", "spark://m:7077", "--archives", "dist/corpus_prep_env.tar.gz#env",
                    "--conf", "spark.pyspark.python=./env/bin/python",
                    "--conf", "spark.pyspark.driver.python=/opt/env/bin/python", "dist/prepare.py",
                    "--input", "x", "--output", "y"]


def test_cli_dry_run_prints_the_exact_command(capsys):
    assert main(["submit", "--project", "proj", "--region", "europe-west4", "--artifacts", TARGET.artifacts,
                 "--cluster", "c1", "--dry-run", "--", "--input", "gs://in", "--output", "gs://o u t"]) == 0
    printed = capsys.readouterr().out.strip()
    assert shlex.split(printed) == commands.submit_job(TARGET, "c1", ["--input", "gs://in", "--output", "gs://o u t"])
    assert main(["create-cluster", "--project", "p", "--region", "r", "--artifacts", "gs://b",
                 "--worker-machine-type", "weird", "--dry-run"]) == 2
    assert "cannot size" in capsys.readouterr().err


def test_upload_needs_the_environment_archive_only_when_it_was_built(tmp_path, capsys):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "prepare.py").write_text("")
    (dist / "corpus_prep-0.1.0-py3-none-any.whl").write_text("")
    upload = ["upload", "--project", "p", "--region", "r", "--artifacts", "gs://b/x", "--dist", str(dist), "--dry-run"]
    assert main(upload) == 0  # cluster-only use: the nodes install the dependencies at creation
    assert shlex.split(capsys.readouterr().out) == ["gcloud", "storage", "cp", f"{dist}/prepare.py",
                                                    f"{dist}/corpus_prep-0.1.0-py3-none-any.whl", "gs://b/x/"]
    (dist / "corpus_prep_env.tar.gz").write_text("")  # package --env-python: Serverless and spark-submit
    assert main(upload) == 0
    assert shlex.split(capsys.readouterr().out)[-2:] == [f"{dist}/corpus_prep_env.tar.gz", "gs://b/x/"]
