"""Spark pipelines: each stage reads and writes DataFrames and calls the kernels in ``udfs``."""
