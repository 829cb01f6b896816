"""Joins against a per-key table when a few keys carry a large share of the rows.

Connected components and survivor choice join rows (edges, cluster members) to one row per
key (a node's smallest neighbour, a cluster's survivor). A shuffled join sends every row of a
key to one task, so a hub with hundreds of thousands of neighbours — a boilerplate-driven
giant cluster — becomes one long task holding the whole neighbour list. Here the per-key rows
of *heavy* keys (``weight >= threshold``; at most ``total rows / threshold`` of them) are
broadcast and joined where the rows already are, with no shuffle of the heavy rows; only the
light keys go through the shuffled join, whose largest key is then below ``threshold`` rows.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas.dedup import DOC_ID


_AT_HUB = "_at_hub"


def hub_join(rows: DataFrame, per_key: DataFrame, key: str | list[str], weight: str,
             threshold: int | None) -> DataFrame:
    """``rows ⋈ per_key`` on ``key`` (inner), ``per_key``'s ``weight`` column dropped.

    One broadcast serves both halves: rows are left-joined to the heavy keys in place, the
    matched ones are done, and only the unmatched go on to the shuffled join with light keys.
    ``threshold=None`` says the caller knows no key is heavy: a plain shuffled join, no broadcast.
    """
    keys = [key] if isinstance(key, str) else key
    if threshold is None:
        return rows.join(per_key.drop(weight), keys)
    heavy = F.col(weight) >= threshold
    hubs = per_key.filter(heavy).drop(weight).withColumn(_AT_HUB, F.lit(True))
    tagged = rows.join(F.broadcast(hubs), keys, "left")
    at_hubs = tagged.filter(F.col(_AT_HUB)).drop(_AT_HUB)
    elsewhere = (tagged.filter(F.col(_AT_HUB).isNull()).select(*rows.columns)
                 .join(per_key.filter(~heavy).drop(weight), keys))
    return at_hubs.unionByName(elsewhere)


def filter_ids(rows: DataFrame, ids: DataFrame, broadcast_limit: int, keep: bool,
               at_most: int | None = None) -> DataFrame:
    """``rows`` whose ``doc_id`` is in ``ids`` (``keep``) or not in it.

    Up to ``broadcast_limit`` ids are broadcast: a map-only semi/anti-join that leaves the wide
    rows (texts, signatures) where they are; beyond it the join shuffles both sides once.
    ``at_most``: a bound the caller knows on the number of ids (the run's documents); within
    the limit, the ids are not counted (a Spark job).
    """
    if (at_most is not None and at_most <= broadcast_limit) or ids.count() <= broadcast_limit:
        ids = F.broadcast(ids)
    return rows.join(ids, DOC_ID, "left_semi" if keep else "left_anti")
