"""Every file the jobs and the runtime reach, and how.

``hadoop``: the driver, through Spark's JVM (local, HDFS and ``gs://`` alike); ``uri``:
executors and the training runtime, through pyarrow.fs and fsspec; ``publish``: atomic output
directories on the driver's layer; ``paths``: the input and output checked before Spark starts;
``readers``: corpora into DataFrames; ``shards``: packed shards back into arrays, checked
against their manifest. Besides Spark's own readers and writers, the jobs reach files only
through here. The training runtime reads manifests and shards through here too; its
checkpoints are written into a local directory by torch and transformers
(``runtime/checkpoints.py``) and copied to other storage with ``uri``.
"""
