"""Spark schema of ``DIR/rejected/``, which every job that reads a corpus writes (dedup, pack)."""

from __future__ import annotations

from pyspark.sql.types import BinaryType, StringType, StructField, StructType

# DIR/rejected/: input records that could not be read as documents, kept verbatim as bytes
# (a JSON line exactly as it was, invalid UTF-8 included; other rows rendered as JSON).
REJECTED = StructType([
    StructField("source", StringType(), True),
    StructField("reason", StringType(), False),
    StructField("record", BinaryType(), True),
])
