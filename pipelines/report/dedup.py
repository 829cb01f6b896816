"""The dedup job's report: ``DIR/report.html`` and ``DIR/report/*.png`` beside ``stats.json``.

Besides ``stats.json`` it needs two things only the finished output can tell: the distribution
of cluster sizes and the members of the largest clusters. Removed documents are not stored
with their text, so their excerpts come from the job's signature table, which keeps the first
characters of every document (``schemas.dedup.EXCERPT_KEPT_CHARS``): no second pass over the
corpus. The gathered data goes to ``report/clusters.json``, from which ``jobs/prepare.py`` builds its own page without Spark.
"""

from __future__ import annotations

import json

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipelines.config import DedupConfig
from pipelines.dedup.survivors import ClusterSummary
from pipelines.io.publish import OutputDir
from pipelines.report import charts
from pipelines.report.html import Raw, excerpt, figure, heading, key_values, page, paragraph, section, table
from pipelines.spark_session import concurrently
from schemas.dedup import DOC_ID
from udfs.banding import collision_probability

TOP_CLUSTERS = 5
MEMBERS_SHOWN = 5  # survivor included
# Characters of each excerpt in report.html, counted after blank runs are collapsed: fewer than
# the signature table keeps (``EXCERPT_KEPT_CHARS``, as clusters.json has them), so that
# collapsing rarely leaves a cell short.
EXCERPT_SHOWN_CHARS = 280
IMAGES = {"s_curve": "s_curve.png", "cluster_sizes": "cluster_sizes.png", "stages": "dedup_stages.png"}


def cluster_data(spark: SparkSession, root: str, excerpts: DataFrame, summary: ClusterSummary) -> dict:
    """Cluster-size histogram and the largest clusters with member excerpts, from a dedup output
    at ``root`` and its ``summary``; ``excerpts`` is the job's ``SIGNATURES`` table (``doc_id``,
    ``excerpt``)."""
    dups = spark.read.parquet(f"{root}/duplicates")
    histogram, largest = summary.histogram, summary.largest[:TOP_CLUSTERS]
    if not largest:
        return {"histogram": [], "largest": []}
    ids = [r["cluster_id"] for r in largest]
    order = Window.partitionBy("cluster_id").orderBy(F.desc("similarity"), DOC_ID)
    shown = (dups.filter(F.col("cluster_id").isin(ids))
             .withColumn("k", F.row_number().over(order)).filter(F.col("k") < MEMBERS_SHOWN)
             .select(DOC_ID, "cluster_id", "similarity", "match").collect())
    wanted = ids + [r[DOC_ID] for r in shown]
    texts = {r[DOC_ID]: r["excerpt"]
             for r in excerpts.filter(F.col(DOC_ID).isin(wanted)).select(DOC_ID, "excerpt").collect()}
    clusters = []
    for row in largest:
        cid = row["cluster_id"]
        members = [{"doc_id": cid, "role": "survivor", "similarity": None, "text": texts.get(cid)}]
        members += [{"doc_id": m[DOC_ID], "role": m["match"], "similarity": round(m["similarity"], 4),
                     "text": texts.get(m[DOC_ID])}
                    for m in sorted((m for m in shown if m["cluster_id"] == cid),
                                    key=lambda m: (-m["similarity"], m[DOC_ID]))]
        clusters.append({"cluster_id": cid, "size": row["size"], "members": members})
    return {"histogram": [list(h) for h in histogram], "largest": clusters}


def images(stats: dict, histogram: list[tuple[int, int]]) -> dict[str, bytes]:
    """The report's charts from ``stats.json`` and the ``(size, clusters)`` histogram."""
    threshold = stats["config"]["lsh"]["threshold"]
    return {IMAGES["s_curve"]: charts.s_curve(stats["bands"], stats["rows"], threshold),
            IMAGES["cluster_sizes"]: charts.cluster_sizes([tuple(h) for h in histogram]),
            IMAGES["stages"]: charts.stage_seconds(stats["stage_seconds"], "Dedup: seconds per stage")}


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({part / whole:.1%})" if whole else f"{part:,}"



VERIFICATION = {
    "exact": "then scored on the full signatures, and given their exact Jaccard similarity where that "
             "estimate is within the uncertainty margin of the threshold.",
    "estimate": "then checked against the full signatures (--verify estimate).",
    "off": "kept unchecked (--verify off).",
}


def _exact_rows(exact: dict | None) -> list[tuple[str, int]]:
    if exact is None:
        return []
    return [("uncertain pairs given their exact Jaccard", exact["checked"]),
            ("… of which at or above the threshold", exact["passed"]),
            ("… estimate passed, exact failed (edges the estimate would have added)",
             exact["estimate_passed_exact_failed"]),
            ("… estimate failed, exact passed (edges the estimate would have missed)",
             exact["estimate_failed_exact_passed"])]


def sections(stats: dict, clusters: dict | None, image_dir: str, stage_chart: bool = True) -> list[Raw]:
    """The dedup part of a page; ``image_dir`` is where ``images()`` were written, relative to the page.

    ``stage_chart=False`` where the page already charts every stage's time (the run report).
    """
    lsh = stats["config"]["lsh"]
    docs = stats["documents"]
    summary = section(
        "Deduplication",
        key_values([
            ("input records", stats["input_records"]),
            ("rejected (unreadable)", stats["rejected"]),
            ("documents", docs),
            ("empty texts (kept, not compared)", stats["empty"]),
            ("exact duplicates removed", Raw(_share(stats["exact_duplicates"], docs))),
            ("near duplicates removed", Raw(_share(stats["near_duplicates"], docs))),
            *([("duplicates of indexed documents removed", Raw(_share(stats["index_duplicates"], docs)))]
              if "index" in stats else []),
            ("documents kept", Raw(_share(stats["kept"], docs))),
            ("duplicate clusters", stats["clusters"]),
            ("largest cluster", stats["largest_cluster"]),
        ]))
    p_t = collision_probability(lsh["threshold"], stats["bands"], stats["rows"])
    banding = section(
        "LSH banding",
        paragraph(f"{stats['bands']} bands of {stats['rows']} rows over "
                  f"{stats['config']['minhash']['num_perm']} MinHash values. A pair at the threshold "
                  f"{lsh['threshold']:g} becomes a candidate with probability {float(p_t):.3f}; candidates are "
                  + VERIFICATION[lsh["verify"]]),
        figure(f"{image_dir}/{IMAGES['s_curve']}", "Probability that a pair of a given Jaccard similarity "
               "is compared; dashed line: the threshold.", "LSH S-curve"),
        key_values([("candidate pairs", stats["candidate_edges"]),
                    ("signature estimate at or above the threshold", stats["estimate_passed"]),
                    *_exact_rows(stats["exact_verification"]),
                    ("duplicate edges", stats["verified_edges"]),
                    ("connected-component rounds", stats["cc_rounds"])]))
    parts = [summary, *([_earlier_runs(stats["index"])] if "index" in stats else []), banding]
    if clusters is not None:
        parts.append(section("Cluster sizes", figure(f"{image_dir}/{IMAGES['cluster_sizes']}",
                                                     "How many clusters have each size (log scale).",
                                                     "cluster-size histogram")))
        parts.append(_largest(clusters))
    if stage_chart:
        parts.append(section("Dedup stage times",
                             figure(f"{image_dir}/{IMAGES['stages']}", "Wall-clock seconds of each dedup stage.",
                                    "dedup stage times")))
    return parts


def _earlier_runs(index: dict) -> Raw:
    """``--against``: per indexed run, the new documents now in the cluster of one of its survivors."""
    rows = [[run["output"], run["documents"], run["matched"]] for run in index["runs"]]
    return section("Earlier runs (--against)",
                   paragraph(f"{index['indexed_documents']:,} indexed documents of {len(rows)} earlier runs; "
                             f"{index['exact_matches']:,} new documents were exact copies of one. A new document "
                             "counts for the run whose survivor now represents it.", "note"),
                   table(["run", "indexed documents", "new documents matched"], rows,
                         {"indexed documents", "new documents matched"}))


def _largest(clusters: dict) -> Raw:
    if not clusters["largest"]:
        return section("Largest clusters", paragraph("No duplicates were found.", "note"))
    parts = [paragraph(f"The {len(clusters['largest'])} largest clusters; up to {MEMBERS_SHOWN} members each "
                       "(the survivor first, then removed members by similarity).", "note")]
    for rank, c in enumerate(clusters["largest"], 1):
        parts.append(heading(f"#{rank}: {c['size']:,} documents"))
        rows = [[m["role"], Raw(str(m["doc_id"])), m["similarity"], excerpt(m["text"], EXCERPT_SHOWN_CHARS)]
                for m in c["members"]]
        parts.append(table(["member", "doc_id", "similarity", "excerpt"], rows, {"similarity"}))
    return section("Largest clusters", *parts)


def write_dedup_report(spark: SparkSession, cfg: DedupConfig, out: OutputDir, stats: dict,
                       excerpts: DataFrame, summary: ClusterSummary) -> None:
    """Write the report into an unpublished output."""
    # The charts need only the histogram: drawn while Spark finds the largest clusters' members.
    clusters, drawn = concurrently(spark, lambda: cluster_data(spark, out.staging, excerpts, summary),
                                   lambda: images(stats, summary.histogram))
    for name, data in drawn.items():
        out.write_bytes(f"report/{name}", data)
    out.write_text("report/clusters.json", json.dumps(clusters, indent=1, sort_keys=True) + "\n")
    html = page("Deduplication report", f"{stats['input']} → {cfg.output}", sections(stats, clusters, "report"))
    out.write_text("report.html", html)
