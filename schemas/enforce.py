"""Enforcement: a table that does not match its declared schema fails loudly, by name."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.types import StructType


class SchemaMismatch(ValueError):
    pass


def conform(df: DataFrame, schema: StructType, table: str) -> DataFrame:
    """Select exactly ``schema``'s columns in order, checking names and types.

    Nullability is checked where the schema forbids nulls only by the type system of the
    producer; types must match exactly so that no implicit cast hides a bug.
    """
    actual = {f.name: f.dataType for f in df.schema.fields}
    problems = []
    for field in schema.fields:
        if field.name not in actual:
            problems.append(f"missing column {field.name!r}")
        elif actual[field.name] != field.dataType:
            problems.append(f"column {field.name!r} is {actual[field.name].simpleString()}, "
                            f"expected {field.dataType.simpleString()}")
    if problems:
        raise SchemaMismatch(f"table {table!r} does not match its schema: " + "; ".join(problems))
    return df.select(*[field.name for field in schema.fields])
