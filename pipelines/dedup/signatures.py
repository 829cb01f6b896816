"""Stage 1: one scan over the documents computing exact hashes, MinHash signatures and band keys.

Texts are read once here and never shuffled: every later stage works on the compact
``SIGNATURES`` table (ids, hashes, lengths, 1 KB signatures, LSH band keys and a short excerpt
for the report).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipelines.arrow_tasks import map_in_arrow
from pipelines.config import MinHashConfig
from schemas.dedup import DOC_ID, EXCERPT_KEPT_CHARS, SIGNATURES
from udfs.arrow_buffers import binary_from_rows
from udfs.lsh import band_keys
from udfs.minhash import compute_signatures, permutations, process_memo


def signature_scan(documents: DataFrame, text_column: str, cfg: MinHashConfig, bands: int, rows: int,
                   carry: tuple[str, ...] = ()) -> DataFrame:
    """``SIGNATURES`` rows for every document (``n_shingles == 0`` marks unclusterable ones),
    followed by the ``carry`` columns of ``documents`` as they are."""
    ngram, char_ngrams = cfg.ngram, cfg.char_ngrams
    a, b = permutations(cfg.num_perm, cfg.seed)
    schema = StructType(SIGNATURES.fields + [documents.schema[c] for c in carry])
    names = schema.fieldNames()
    width = len(carry)

    def scan(batches):
        memo = process_memo(a, b, ngram, char_ngrams)  # the worker's, kept across its tasks
        for batch in batches:
            texts = batch.column(1 + width)
            out = compute_signatures(texts, ngram=ngram, char_ngrams=char_ngrams, a=a, b=b, memo=memo)
            keys = band_keys(out.signatures, bands, rows).reshape(-1)
            key_offsets = np.arange(len(texts) + 1, dtype=np.int32) * np.int32(bands)
            yield pa.RecordBatch.from_arrays([
                batch.column(0),
                pa.array(out.exact_hash_hi.view(np.int64)),
                pa.array(out.exact_hash_lo.view(np.int64)),
                pa.array(out.n_shingles),
                pa.array(out.lengths),
                pa.array(out.normalized_length),
                binary_from_rows(out.signatures),
                pa.ListArray.from_arrays(pa.array(key_offsets), pa.array(keys)),
                pc.utf8_slice_codeunits(texts, 0, EXCERPT_KEPT_CHARS),
                *batch.columns[1:1 + width],
            ], names=names)

    return map_in_arrow(documents.select(DOC_ID, *carry, F.col(f"`{text_column}`")), scan, schema)
