"""Training and inference on the packed shards written by the pack job.

``runtime.data`` streams packed rows from a shard manifest, ``runtime.train`` trains any
``transformers`` causal LM on them (or pretrains an encoder with masked LM,
``runtime.objectives``), ``runtime.generate`` decodes from causal checkpoints and
``runtime.infer`` runs BERT-style tasks from encoder checkpoints.
Defaults live in ``runtime.config``.
"""
