"""Pure, Spark-free kernels on Arrow arrays and NumPy buffers.

Everything here can be unit-tested without a SparkSession; the Spark stages in
``pipelines/`` only move Arrow record batches in and out of these functions.
"""
