"""The first call of every compiled kernel the dedup workers run, on inputs of a few words.

A Numba kernel is compiled on its first call for the argument types it meets, and the machine
code is cached beside its source; a new process still loads it on its first call (about 0.35 s
for these kernels, after as long again of imports). :func:`load_kernels` makes those calls with the
types the jobs pass: inputs go through an Arrow IPC round trip, as Spark hands batches to its
Python workers (read-only buffers, a type of their own to Numba). ``scripts/warm_start.py``
calls it to fill the cache once per environment; a job calls it in its first Python worker
while the JVM reads the corpus (``pipelines.spark_session.warm_python_workers``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from udfs.arrow_buffers import as_from_spark, binary_from_rows, rows_from_binary
from udfs.lsh import band_keys, bucket_pairs, signature_agreement
from udfs.minhash import compute_signatures, pair_jaccard, permutations, shingle_sets


def load_kernels(num_perm: int = 8, ngram: int = 5) -> None:
    """Call each kernel once per argument type the jobs use (texts with and without nulls, word
    and character shingles). The types do not depend on ``num_perm`` or ``ngram``."""
    a, b = permutations(num_perm, 1)
    for texts in (["one two three four five six", "seven eight"], ["one two three four five six", None]):
        (batch,) = as_from_spark(pa.array(texts, pa.string()))
        for char_ngrams in (False, True):
            signatures = compute_signatures(batch, ngram=ngram, char_ngrams=char_ngrams, a=a, b=b).signatures
            keys = band_keys(signatures, 2, 3)
            bucket_pairs(keys.ravel(), np.repeat(np.arange(len(keys), dtype=np.int64), 2), 2, 1)
            (column,) = as_from_spark(binary_from_rows(signatures))
            stacked = np.concatenate([rows_from_binary(column, signatures.dtype, num_perm)])
            signature_agreement(stacked, np.array([0]), np.array([1]))
            sets = shingle_sets(batch, ngram=ngram, char_ngrams=char_ngrams)
            (ids,) = as_from_spark(pa.array([1, 2], pa.int64()))
            pair_jaccard(ids.to_numpy(), sets, np.array([2]), np.array([1]))
