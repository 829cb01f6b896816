"""Training and inference on the packed shards written by the pack job.

``runtime.data`` streams packed rows from a shard manifest, ``runtime.train`` trains any
``transformers`` causal LM on them and ``runtime.generate`` decodes from the checkpoints.
Defaults live in ``runtime.config``.
"""
