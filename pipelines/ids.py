"""Deterministic document ids, independent of file layout, partitioning, order and AQE.

Without ``--id-column`` a document's id is Spark's ``xxhash64`` (seed 42) of all its input
columns, so the same row gets the same id in whichever file or partition it arrives. Rows
that are identical in every column (and so share that hash) are told apart by an occurrence
number: the k-th copy (k >= 1) gets ``xxhash64(hash, k)``. Which physical copy receives which
number does not matter — the copies are identical — so the output is the same either way.

With ``--id-column`` the user's ids are used: integers as they are, strings through
``xxhash64``. Null ids are rejected rows; repeated ids, or two strings whose hashes collide,
are input errors (the job cannot tell such documents apart).
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import IntegralType, StringType

from pipelines.io.readers import InputError, as_rejected
from schemas.tables import DOC_ID

_ROW_HASH = "_row_hash"
_OCCURRENCE = "_occurrence"


def assign_doc_ids(frame: DataFrame, id_column: str | None, text_column: str,
                   materialize: Callable[[DataFrame], DataFrame] = lambda df: df) -> tuple[DataFrame, DataFrame]:
    """Return ``(documents with DOC_ID, rejected rows in the REJECTED schema)``.

    ``materialize`` persists the small table of repeated row hashes (the job passes its
    checkpoint), so each later pass over the documents scans the corpus for its rows only, not
    again to find which rows repeat.
    """
    if DOC_ID in frame.columns and id_column != DOC_ID:
        raise InputError(f"the input already has a {DOC_ID!r} column; pass --id-column {DOC_ID}")
    if id_column is None:
        return _row_hash_ids(frame, text_column, materialize), as_rejected(frame.limit(0), "")
    if id_column not in frame.columns:
        raise InputError(f"id column {id_column!r} not found; the input has columns {sorted(frame.columns)}")
    dtype = frame.schema[id_column].dataType
    if isinstance(dtype, IntegralType):
        ids = F.col(id_column).cast("long")
    elif isinstance(dtype, StringType):
        ids = F.xxhash64(F.col(id_column))
    else:
        raise InputError(f"id column {id_column!r} has type {dtype.simpleString()}; expected integer or string")
    rejected = as_rejected(frame.filter(F.col(id_column).isNull()), f"null id in {id_column!r}")
    documents = frame.filter(F.col(id_column).isNotNull()).withColumn(DOC_ID, ids)
    _check_unique(documents, id_column)
    return documents, rejected


def _check_unique(documents: DataFrame, id_column: str) -> None:
    clashes = (documents.groupBy(DOC_ID)
               .agg(F.count(F.lit(1)).alias("n"), F.min(id_column).alias("lo"), F.max(id_column).alias("hi"))
               .filter(F.col("n") > 1).limit(5).collect())
    if not clashes:
        return
    repeated = [r["lo"] for r in clashes if r["lo"] == r["hi"]]
    if repeated:
        raise InputError(f"id column {id_column!r} repeats ids, e.g. {repeated}; ids must be unique")
    pairs = [(r["lo"], r["hi"]) for r in clashes]
    raise InputError(f"ids {pairs} hash to the same 64-bit value; use integer ids")


def _row_hash_ids(frame: DataFrame, text_column: str, materialize: Callable[[DataFrame], DataFrame]) -> DataFrame:
    columns = [F.col(f"`{c}`") for c in frame.columns]
    hashed = frame.withColumn(_ROW_HASH, F.xxhash64(*columns))
    repeated = materialize(hashed.groupBy(_ROW_HASH).count().filter(F.col("count") > 1).select(_ROW_HASH))
    if repeated.isEmpty():
        return hashed.withColumnRenamed(_ROW_HASH, DOC_ID)
    # Identical rows exist: number the copies of each repeated hash. The tie-breakers only
    # matter if two *different* rows collide on 64 bits; they keep even that case deterministic.
    order = Window.partitionBy(_ROW_HASH).orderBy(F.xxhash64(F.lit("tiebreak"), *columns), F.col(f"`{text_column}`"))
    flagged = hashed.join(repeated.withColumn("_repeated", F.lit(True)), _ROW_HASH, "left")
    singles = flagged.filter(F.col("_repeated").isNull()).drop("_repeated")
    copies = (flagged.filter(F.col("_repeated")).drop("_repeated")
              .withColumn(_OCCURRENCE, F.row_number().over(order) - 1)
              .withColumn(_ROW_HASH, F.when(F.col(_OCCURRENCE) == 0, F.col(_ROW_HASH))
                          .otherwise(F.xxhash64(F.col(_ROW_HASH), F.col(_OCCURRENCE))))
              .drop(_OCCURRENCE))
    return singles.unionByName(copies).withColumnRenamed(_ROW_HASH, DOC_ID)
