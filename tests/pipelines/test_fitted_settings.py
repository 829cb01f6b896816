"""Session settings fitted to one job's data (``FittedSettings``), the row size they start from
(``parquet_row_bytes``, read from the footers), and a dedup run on fitted settings."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io.readers import parquet_row_bytes
from pipelines.spark_session import (GENERATED_CODE_FROM_BYTES, READER_BATCH, READER_BATCH_BYTES, SHUFFLE_PARTITIONS,
                                     STATISTICS, TARGET_PARTITION_BYTES, WHOLE_STAGE_CODEGEN, FittedSettings)
from tests.pipelines.dedup.dedup_helpers import dedup, read_rows

SAMPLE = "samples/hf_public_repos_sample.parquet"


def test_a_value_the_user_set_is_kept_and_the_session_is_left_as_found(spark):
    assert spark.conf.get(SHUFFLE_PARTITIONS) == "4"  # the fixture's --shuffle-partitions
    assert spark.conf.get(READER_BATCH, None) is None
    fitted = FittedSettings(spark)
    assert fitted.fit_shuffle(10**12) == 4  # a terabyte's worth changes nothing the user chose
    assert fitted.fit_documents(2**20, "content") == READER_BATCH_BYTES // 2**20
    assert spark.conf.get(READER_BATCH) == str(READER_BATCH_BYTES // 2**20)
    assert spark.conf.get(f"{STATISTICS}#content") == "false"
    fitted.restore()
    assert spark.conf.get(READER_BATCH, None) is None
    assert spark.conf.get(f"{STATISTICS}#content", None) is None
    assert spark.conf.get(SHUFFLE_PARTITIONS) == "4"


def test_small_inputs_are_evaluated_without_generated_code_unless_the_user_asked_for_it(spark):
    def compiled():
        plan = spark.range(10).selectExpr("id * 2 AS x").filter("x > 4")._jdf.queryExecution().executedPlan()
        return "*(" in plan.toString()  # a stage of generated code

    assert spark.conf.get(WHOLE_STAGE_CODEGEN, None) is None
    fitted = FittedSettings(spark)
    fitted.fit_code_generation(GENERATED_CODE_FROM_BYTES)  # large enough: Spark's default stays
    assert spark.conf.get(WHOLE_STAGE_CODEGEN, None) is None and compiled()
    fitted.fit_code_generation(GENERATED_CODE_FROM_BYTES - 1)
    assert spark.conf.get(WHOLE_STAGE_CODEGEN) == "false" and not compiled()
    fitted.restore()
    assert spark.conf.get(WHOLE_STAGE_CODEGEN, None) is None
    spark.conf.set(WHOLE_STAGE_CODEGEN, "true")
    try:
        fitted = FittedSettings(spark)
        fitted.fit_code_generation(0)
        assert spark.conf.get(WHOLE_STAGE_CODEGEN) == "true"
        fitted.restore()
        assert spark.conf.get(WHOLE_STAGE_CODEGEN) == "true"
    finally:
        spark.conf.unset(WHOLE_STAGE_CODEGEN)


def test_without_a_user_value_partitions_follow_the_bytes(spark):
    spark.conf.unset(SHUFFLE_PARTITIONS)
    try:
        fitted = FittedSettings(spark)
        cores = spark.sparkContext.defaultParallelism
        assert fitted.partitions(0) == cores  # never fewer tasks than cores
        assert fitted.partitions(10 * TARGET_PARTITION_BYTES + 1) == 11
        # ... unless each would get less than spread_bytes: then one per spread_bytes, at least one
        assert fitted.partitions(0, spread_bytes=2**20) == 1
        assert fitted.partitions(2**20, spread_bytes=2**20) == 1
        assert fitted.partitions(2**20 + 1, spread_bytes=2**20) == min(cores, 2)
        assert fitted.partitions(100 * 2**20, spread_bytes=2**20) == cores
        assert fitted.partitions(10 * TARGET_PARTITION_BYTES + 1, spread_bytes=2**40) == 11
        assert fitted.fit_shuffle(40 * TARGET_PARTITION_BYTES) == 40
        assert spark.conf.get(SHUFFLE_PARTITIONS) == "40"
        fitted.restore()
        assert spark.conf.get(SHUFFLE_PARTITIONS, None) is None
    finally:
        spark.conf.set(SHUFFLE_PARTITIONS, "4")


def test_reader_batches_are_bounded_by_bytes_not_rows(spark):
    for row_bytes in (100, 40_000, 3 * 2**20, 50 * 2**20):
        fitted = FittedSettings(spark)
        rows = fitted.fit_documents(row_bytes, "content")
        fitted.restore()
        # at most READER_BATCH_BYTES of such rows, at least one row, never more than Spark's default
        assert 1 <= rows <= 4096 and (rows == 1 or rows * row_bytes <= READER_BATCH_BYTES)
        assert rows == 4096 or (rows + 1) * row_bytes > READER_BATCH_BYTES
    fitted = FittedSettings(spark)
    assert fitted.fit_documents(None, "content") == 4096  # unknown (not Parquet): Spark's default
    fitted.restore()


def test_row_bytes_is_the_largest_row_group_average_in_the_footers(spark, tmp_path):
    rng = np.random.default_rng(0)
    texts = lambda n, size: [rng.integers(97, 123, size, dtype=np.uint8).tobytes().decode() for _ in range(n)]  # noqa: E731
    small, large = pa.table({"content": texts(100, 10)}), pa.table({"content": texts(5, 100_000)})
    path = tmp_path / "two-groups.parquet"
    with pq.ParquetWriter(path, small.schema) as writer:
        writer.write_table(small)
        writer.write_table(large)
    footer = pq.ParquetFile(path).metadata
    expected = max(math.ceil(footer.row_group(i).total_byte_size / footer.row_group(i).num_rows)
                   for i in range(footer.num_row_groups))
    assert expected >= 100_000
    assert parquet_row_bytes(spark, [str(path)]) == expected
    empty = tmp_path / "empty.parquet"
    pq.write_table(small.slice(0, 0), empty)
    assert parquet_row_bytes(spark, [str(empty)]) is None


def test_dedup_on_fitted_partitions_equals_the_run_on_the_users_and_restores_them(spark, tmp_path):
    dedup(spark, SAMPLE, tmp_path / "users")
    spark.conf.unset(SHUFFLE_PARTITIONS)
    try:
        dedup(spark, SAMPLE, tmp_path / "fitted")
        assert spark.conf.get(SHUFFLE_PARTITIONS, None) is None  # fitted for the run only
    finally:
        spark.conf.set(SHUFFLE_PARTITIONS, "4")
    assert read_rows(tmp_path / "fitted" / "duplicates") == read_rows(tmp_path / "users" / "duplicates")
    assert ({r["doc_id"] for r in read_rows(tmp_path / "fitted" / "data")}
            == {r["doc_id"] for r in read_rows(tmp_path / "users" / "data")})
