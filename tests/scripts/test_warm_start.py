"""``scripts/warm_start.py``'s edit of the environment's ``spark-defaults.conf``: what ``spark-submit``
of the environment reads before the job can choose its JVM's options."""

from __future__ import annotations

import importlib.util
import os
import types

import pytest

from tests.conftest import ROOT


@pytest.fixture
def warm_start(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("warm_start", os.path.join(ROOT, "scripts", "warm_start.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # a Spark home of its own: the environment's real one is left alone
    monkeypatch.setattr(module, "pyspark", types.SimpleNamespace(__file__=str(tmp_path / "pyspark" / "__init__.py")))
    return module


def conf_lines(tmp_path):
    return (tmp_path / "pyspark" / "conf" / "spark-defaults.conf").read_text().splitlines()


def test_spark_defaults_get_the_driver_options_once_and_keep_other_lines(warm_start, tmp_path):
    from pipelines.config import SparkConfig
    from pipelines.spark_session import driver_java_options

    (tmp_path / "pyspark" / "conf").mkdir(parents=True)
    (tmp_path / "pyspark" / "conf" / "spark-defaults.conf").write_text("spark.eventLog.enabled true\n")
    warm_start.write_spark_defaults()
    first = conf_lines(tmp_path)
    warm_start.write_spark_defaults()  # setup run again: the same file, not a second copy
    assert conf_lines(tmp_path) == first
    assert first[0] == "spark.eventLog.enabled true"
    assert first[2] == f"spark.driver.extraJavaOptions {driver_java_options(SparkConfig())}"
    assert "-XX:TieredStopAtLevel=1" in first[2]


def test_spark_defaults_that_set_the_options_already_are_left_alone(warm_start, tmp_path):
    (tmp_path / "pyspark" / "conf").mkdir(parents=True)
    (tmp_path / "pyspark" / "conf" / "spark-defaults.conf").write_text("spark.driver.extraJavaOptions -Xss4m\n")
    assert "left as it is" in warm_start.write_spark_defaults()
    assert conf_lines(tmp_path) == ["spark.driver.extraJavaOptions -Xss4m"]
