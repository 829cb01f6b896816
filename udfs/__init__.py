"""Pure, Spark-free kernels on Arrow arrays and NumPy buffers.

Everything here can be unit-tested without a SparkSession; the Spark stages in
``pipelines/`` only move Arrow record batches in and out of these functions.

What ``pipelines/`` calls is a plain Python function; the compiled Numba kernel behind it is
private (``_name``). A Spark task ships its function with what it references, and a plain
function travels as a name that the worker imports, kernels already loaded. A Numba dispatcher
travels by value instead: the worker rebuilds it from its bytecode and compiles it again,
0.2-0.3 s on every worker of every run (``tests/udfs/test_shipped_kernels.py``).
"""
