"""The worker daemon imports PySpark from the installed package when Spark's home is that package."""

from __future__ import annotations

import os

from pipelines.worker_daemon import without_installed_pyspark_zip


def _layout(root, with_init: bool) -> tuple[str, str]:
    """``(site, zip)``: a directory holding ``pyspark/`` and that package's ``python/lib/pyspark.zip``."""
    site = root / "site-packages"
    lib = site / "pyspark" / "python" / "lib"
    lib.mkdir(parents=True)
    (lib / "pyspark.zip").write_bytes(b"")
    if with_init:
        (site / "pyspark" / "__init__.py").write_text("")
    return str(site), str(lib / "pyspark.zip")


def test_the_zip_of_an_installed_pyspark_on_the_path_is_dropped(tmp_path):
    site, zip_path = _layout(tmp_path, with_init=True)
    py4j = os.path.join(os.path.dirname(zip_path), "py4j-src.zip")
    assert without_installed_pyspark_zip([zip_path, py4j, "/elsewhere", site]) == [py4j, "/elsewhere", site]


def test_a_spark_distribution_or_a_package_not_on_the_path_keeps_its_zip(tmp_path):
    site, zip_path = _layout(tmp_path / "a", with_init=False)  # not a package: a Spark distribution's home
    assert without_installed_pyspark_zip([zip_path, site]) == [zip_path, site]
    site, zip_path = _layout(tmp_path / "b", with_init=True)
    assert without_installed_pyspark_zip([zip_path, "/elsewhere"]) == [zip_path, "/elsewhere"]


def test_the_sessions_python_workers_import_pyspark_from_byte_code(spark):
    """Fails where Spark's worker daemon imports PySpark from its zip, as Spark's own does."""
    def where(batches):
        import pyarrow as pa
        import pyspark.worker

        for _ in batches:
            yield pa.RecordBatch.from_pydict({"file": [pyspark.worker.__file__], "cached": [pyspark.worker.__cached__]})

    (row,) = spark.range(1, numPartitions=1).mapInArrow(where, "file string, cached string").collect()
    assert ".zip" not in row["file"] and row["cached"]
