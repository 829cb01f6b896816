"""Helpers shared by the dedup job tests."""

from __future__ import annotations

import pyarrow.parquet as pq

from pipelines.config import DedupConfig, InputConfig
from pipelines.dedup.pipeline import run_dedup


def dedup(spark, input_path, output, **options):
    input_options = {k: options.pop(k) for k in ("text_column", "id_column", "input_format") if k in options}
    cfg = DedupConfig(input=InputConfig(path=str(input_path), **input_options), output=str(output), **options)
    return run_dedup(cfg, spark=spark)


def read_rows(path, sort_key="doc_id"):
    table = pq.read_table(str(path))
    return sorted(table.to_pylist(), key=lambda r: r[sort_key])
