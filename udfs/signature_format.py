"""What a stored MinHash signature means, apart from the kernels that compute it.

These constants are part of the on-disk format (``udfs.minhash`` explains the tokeniser, hash
and permutations they go with). They live in a module of their own so that checking a job's
options or reading an index manifest does not import Numba and build the kernels' Unicode
tables (0.6 s), which the dedup job would otherwise pay before it can start Spark.
"""

from __future__ import annotations

import numpy as np

SIGNATURE_VERSION = 1  # bump when the tokeniser, the shingle hash or the permutations change
EMPTY_SLOT = np.uint32(0xFFFFFFFF)  # a slot no shingle reached: the signature of a shingle-less text
MAX_NGRAM = 64  # the longest shingle window the kernels accept
