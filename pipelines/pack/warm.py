"""The first call of every compiled kernel the pack job's Python workers run, on three tiny documents.

As in the dedup job (``udfs.warm``), a new Python worker pays for its imports (NumPy, Numba,
PyArrow, ``tokenizers``) and then for loading each kernel's cached machine code on its first
call: about a second before the first batch is tokenized, which on a small corpus is most of
the tokenize stage (BENCHMARKS.md, "Pack job: start-up on a small corpus"). :func:`load_kernels`
tokenizes three documents with a tiny in-memory tokenizer and writes them as a shard in every
format, for each token dtype and packing method, into a temporary directory: the calls the
job's tasks make, with the types they pass. ``scripts/warm_start.py`` calls it to fill the
cache once per environment; the job calls it in its first Python worker while the JVM reads
the corpus and the tokenizer trains (``pipelines.spark_session.warm_python_workers``).
Everything is imported inside, so the driver can name this function before its session starts
without paying for those imports.
"""

from __future__ import annotations


def load_kernels() -> None:
    import tempfile

    import numpy as np
    import pyarrow as pa
    from tokenizers import Tokenizer, models, pre_tokenizers

    from pipelines.config import FORMATS, MEGATRON, PackingMethod
    from pipelines.pack.shards import ShardSpec, gather_documents, write_shard
    from udfs.arrow_buffers import as_from_spark
    from udfs.tokenize import STATUS_OK, StreamSpec, ids_as_binary, tokenize_batch

    tokenizer = Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "one": 4, "two": 5},
                                           unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    (texts,) = as_from_spark(pa.array(["one two one", None, "two"], pa.string()))
    streams = tokenize_batch(texts, StreamSpec(tokenizer.to_str(), eos_id=1, bos_id=2, max_doc_tokens=4))
    streams = streams.filter(pa.array(streams.column("status").to_numpy() == STATUS_OK))
    doc_ids = pa.array(np.arange(len(streams), dtype=np.int64))
    with tempfile.TemporaryDirectory() as staging:
        for token_dtype in ("uint16", "int32"):
            ids = ids_as_binary(streams, ShardSpec.numpy_dtype(token_dtype)).column("ids")
            batch = pa.RecordBatch.from_arrays(as_from_spark(ids, doc_ids), names=["ids", "doc_id"])
            for method in PackingMethod:
                spec = ShardSpec(staging=staging, seq_len=4, pad_id=0, token_dtype=token_dtype, method=method,
                                 formats=(*FORMATS, MEGATRON), shuffle_rows=True, seed=0, compression="zstd",
                                 row_group_rows=8, feature_names="maxtext")
                write_shard(0, gather_documents([batch], spec.np_token_dtype), spec, "warm-up")
