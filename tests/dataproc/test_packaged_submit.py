"""The packaged job (wheel + packed virtualenv, not the source tree) under spark-submit on a multi-process cluster.

``local-cluster[2,1,1024]`` starts a standalone master and two workers whose executors are
separate JVMs with their own Python workers: each must unpack the shipped environment and
import the project from it, exactly as on Dataproc or a self-managed cluster.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tarfile

import pytest

from dataproc.commands import ENV_ARCHIVE, prepare_args, spark_submit
from dataproc.package import build
from pipelines.pack.verify import verify_shards
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SAMPLE = os.path.join(ROOT, "samples", "hf_public_repos_sample.parquet")


def test_packaged_prepare_runs_on_separate_executors(tmp_path):
    import pyspark

    dist = tmp_path / "dist"
    build(dist, env_python=sys._base_executable)
    driver_env = tmp_path / "driver-env"  # client mode: the driver runs an unpacked copy
    with tarfile.open(dist / ENV_ARCHIVE) as tar:
        tar.extractall(driver_env, filter="tar")
    driver_python = str(driver_env / "bin" / "python")
    where = subprocess.run([driver_python, "-c", "import pipelines, udfs; print(pipelines.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(str(driver_env)), where  # the installed wheel, not the checkout

    spark_home = os.path.dirname(pyspark.__file__)
    before = set(glob.glob(os.path.join(spark_home, "work", "app-*")))
    out = tmp_path / "run"
    argv = spark_submit("local-cluster[2,1,1024]", str(dist), driver_python,
                        prepare_args(SAMPLE, str(out), extra=("--train-tokenizer", "--vocab-size", "400",
                                                              "--seq-len", "128", "--num-shards", "2")),
                        spark_submit_bin=os.path.join(os.path.dirname(sys.executable), "spark-submit"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_SUBMIT_ARGS")}
    env["SPARK_HOME"] = spark_home
    try:
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        apps = sorted(set(glob.glob(os.path.join(spark_home, "work", "app-*"))) - before)
        assert len(apps) == 1
        executors = sorted(glob.glob(os.path.join(apps[0], "*", "env", "bin", "python")))
        assert len(executors) == 2, "each executor process unpacks the shipped environment"
    finally:
        for app in set(glob.glob(os.path.join(spark_home, "work", "app-*"))) - before:
            subprocess.run(["rm", "-rf", app], check=False)

    stats = json.loads((out / "dedup" / "stats.json").read_text())
    assert (stats["exact_duplicates"], stats["near_duplicates"], stats["kept"]) == (3, 2, 95)
    assert verify_shards(str(out / "pack"))["files"] == 4  # 2 shards x (parquet, tfrecord)
    assert (out / "report.html").exists() and (out / "dedup" / "report.html").exists()
    assert "report: " in proc.stdout
