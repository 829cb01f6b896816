"""Spark schemas of the dedup job's intermediate and output tables (``rejected/``: ``schemas.rejected``).

Column names are defined once here; pipeline code refers to these constants so that a
rename cannot silently desynchronise a writer from its reader.
"""

from __future__ import annotations

from pyspark.sql.types import (ArrayType, BinaryType, DoubleType, IntegerType, LongType, StringType,
                               StructField, StructType)

DOC_ID = "doc_id"

# Leading characters of each text kept beside its signature, so the report can show the members
# of the largest clusters (``report/clusters.json``, ``report.html``) without scanning the corpus again.
EXCERPT_KEPT_CHARS = 320

# One row per document (empty texts included): what the signature scan produced.
SIGNATURES = StructType([
    StructField(DOC_ID, LongType(), False),
    StructField("exact_hash_hi", LongType(), False),
    StructField("exact_hash_lo", LongType(), False),
    StructField("n_shingles", IntegerType(), False),
    StructField("text_length", LongType(), False),  # characters of the raw text
    StructField("normalized_length", LongType(), False),  # bytes after normalisation; 0 = empty
    StructField("signature", BinaryType(), False),
    # LSH bucket of each band (``udfs.lsh.band_keys``), computed while the signature is at hand.
    StructField("band_keys", ArrayType(LongType()), False),
    StructField("excerpt", StringType(), True),  # first EXCERPT_KEPT_CHARS characters, for the report
])

# The (band key, document) pairs of one LSH part (``key mod parts``), packed as two little-endian
# int64 arrays: a few thousand such rows carry a gigabyte's 7 million pairs through the shuffle.
BAND_KEY_BLOCKS = StructType([
    StructField("part", IntegerType(), False),
    StructField("band_keys", BinaryType(), False),
    StructField("doc_ids", BinaryType(), False),
])

# Undirected graph edges; ``src > dst`` is not required by readers but is produced by writers.
EDGES = StructType([
    StructField("src", LongType(), False),
    StructField("dst", LongType(), False),
])

VERIFIED_EDGES = StructType([
    StructField("src", LongType(), False),
    StructField("dst", LongType(), False),
    StructField("similarity", DoubleType(), False),
])

# Candidate pairs whose signature estimate was too close to the threshold to decide alone:
# ``similarity`` is their exact Jaccard, ``estimate`` the signature agreement.
EXACT_SCORED_EDGES = StructType([
    StructField("src", LongType(), False),
    StructField("dst", LongType(), False),
    StructField("similarity", DoubleType(), False),
    StructField("estimate", DoubleType(), False),
])

# DIR/duplicates/: every removed document, the survivor of its cluster and the edge that linked it.
DUPLICATES = StructType([
    StructField(DOC_ID, LongType(), False),
    StructField("cluster_id", LongType(), False),
    StructField("linked_to", LongType(), False),
    StructField("similarity", DoubleType(), False),
    StructField("match", StringType(), False),  # "exact", "near" or "index" (a duplicate of an indexed document)
])


# An index of a run's documents (``pipelines/dedup/index.py``): INDEX/runs/RUN/docs/, one row per
# document of the run. ``survivor`` is the document itself when the run kept it, else its
# cluster's survivor. ``band_keys`` and ``signature`` are set for the documents that took part in
# LSH (one per exact-copy group, with shingles): the others are found through their exact hash.
INDEX_DOCS = StructType([
    StructField(DOC_ID, LongType(), False),
    StructField("survivor", LongType(), False),
    StructField("exact_hash_hi", LongType(), False),
    StructField("exact_hash_lo", LongType(), False),
    StructField("band_keys", ArrayType(LongType()), True),
    StructField("signature", BinaryType(), True),
])

# INDEX/runs/RUN/texts/: the texts of the run's removed LSH documents (its kept ones are in the
# run's data/), read only for the exact Jaccard of uncertain pairs.
INDEX_TEXTS = StructType([
    StructField(DOC_ID, LongType(), False),
    StructField("text", StringType(), True),
])
