"""Shared fixtures: one local SparkSession for the whole test session."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from pipelines.config import SparkConfig
    from pipelines.spark_session import get_spark

    session = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, ui=False,
                                    log_level="ERROR", driver_memory="2g"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def samples_dir():
    return os.path.join(ROOT, "samples")
