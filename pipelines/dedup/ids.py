"""Deterministic document ids, independent of file layout, partitioning, order and AQE.

Without ``--id-column`` a document's id is Spark's ``xxhash64`` (seed 42) of all its input
columns, so the same row gets the same id in whichever file or partition it arrives. Rows
that are identical in every column (and so share that hash) are told apart by an occurrence
number: the k-th copy (k >= 1) gets ``xxhash64(hash, k)``. Which physical copy receives which
number does not matter — the copies are identical — so the output is the same either way.
Copies are numbered in the order of a second, independently seeded hash of the row
(``TIEBREAK``), so two *different* rows that collide on the first hash still get the same ids
in every pass that numbers them (the signature table and the written documents).

Which hashes repeat is learnt from the signature table (one id per input row, written by the
signature scan anyway), not from a separate pass over the corpus: the scan runs on the row
hashes with ``TIEBREAK`` carried along, and :func:`number_copies` then gives the copies their
own ids both there and in the documents written at the end.

With ``--id-column`` the user's ids are used: integers as they are, strings through
``xxhash64``. Null ids are rejected rows; repeated ids, or two strings whose hashes collide,
are input errors (the job cannot tell such documents apart).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import IntegralType, StringType

from pipelines.io.readers import InputError, as_rejected
from schemas.dedup import DOC_ID

TIEBREAK = "_tiebreak"
_OCCURRENCE = "_occurrence"


def assign_doc_ids(frame: DataFrame, id_column: str | None) -> tuple[DataFrame, DataFrame]:
    """Return ``(documents with DOC_ID, rejected rows in the REJECTED schema)``.

    Without ``id_column`` the documents also carry ``TIEBREAK``, and copies of a repeated row
    still share their ``DOC_ID`` (the row hash) until :func:`number_copies` tells them apart.
    """
    if DOC_ID in frame.columns and id_column != DOC_ID:
        raise InputError(f"the input already has a {DOC_ID!r} column; pass --id-column {DOC_ID}")
    if id_column is None:
        columns = [F.col(f"`{c}`") for c in frame.columns]
        hashed = frame.select("*", row_hash(frame).alias(DOC_ID),
                              F.xxhash64(F.lit("tiebreak"), *columns).alias(TIEBREAK))
        return hashed, as_rejected(frame.limit(0), "")
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


def row_hash(frame: DataFrame) -> Column:
    """A row's id without ``--id-column``: ``xxhash64`` of all its columns."""
    return F.xxhash64(*[F.col(f"`{c}`") for c in frame.columns])


def doc_id_column(frame: DataFrame) -> Column:
    """The id the dedup job gives each row, for jobs that read its output or the corpus itself.

    A dedup output carries ``DOC_ID``; any other input gets the row hash, which is the dedup id
    of every row that is not repeated (identical rows share it; their documents are identical).
    """
    if DOC_ID not in frame.columns:
        return row_hash(frame)
    if isinstance(frame.schema[DOC_ID].dataType, IntegralType):
        return F.coalesce(F.col(DOC_ID).cast("long"), row_hash(frame))
    return F.coalesce(F.xxhash64(F.col(DOC_ID)), row_hash(frame))  # a string id, hashed as --id-column would


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


def repeated_hashes(rows: DataFrame) -> DataFrame:
    """``(DOC_ID)`` of the row hashes that more than one row of ``rows`` carries."""
    return rows.groupBy(DOC_ID).count().filter(F.col("count") > 1).select(DOC_ID)


def number_copies(repeated: DataFrame, *frames: DataFrame) -> tuple[DataFrame, ...]:
    """Each of ``frames`` (``DOC_ID`` = row hash, ``TIEBREAK``) with every copy of a repeated hash
    under its own id, ``TIEBREAK`` dropped.

    Rows of hashes not in ``repeated`` keep their id without moving (``repeated`` is small and
    broadcast); only the copies are shuffled, to be numbered in ``TIEBREAK`` order. The caller
    asks first whether any hash repeats (``repeated.isEmpty()``): as a rule none does, and then
    dropping ``TIEBREAK`` is all there is to do.
    """
    return tuple(_numbered(rows, repeated) for rows in frames)


def _numbered(rows: DataFrame, repeated: DataFrame) -> DataFrame:
    flagged = rows.join(repeated.withColumn("_repeated", F.lit(True)), DOC_ID, "left")
    singles = flagged.filter(F.col("_repeated").isNull()).drop("_repeated", TIEBREAK)
    order = Window.partitionBy(DOC_ID).orderBy(TIEBREAK)
    copies = (flagged.filter(F.col("_repeated")).drop("_repeated")
              .withColumn(_OCCURRENCE, F.row_number().over(order) - 1)
              .withColumn(DOC_ID, F.when(F.col(_OCCURRENCE) == 0, F.col(DOC_ID))
                          .otherwise(F.xxhash64(F.col(DOC_ID), F.col(_OCCURRENCE))))
              .drop(_OCCURRENCE, TIEBREAK))
    return singles.unionByName(copies)
