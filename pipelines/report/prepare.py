"""``OUTPUT/report.html`` of an end-to-end run: stages, times and row counts, then the dedup and pack parts."""

from __future__ import annotations

import json

from pipelines.io.hadoop import HadoopFs
from pipelines.report import charts, dedup, pack
from pipelines.report.html import Raw, figure, page, paragraph, section, table, tag

STAGES_IMAGE = "stages.png"


def stage_rows(result) -> list[list]:
    """One row per stage: status, seconds, rows in and out."""
    s, m = result.stats, result.manifest
    counts = {
        "dedup": (s["input_records"], f"{s['kept']:,} documents kept") if s else (None, "—"),
        "pack": ((m["stats"]["input_documents"], f"{m['totals']['rows']:,} rows, {m['totals']['tokens']:,} tokens")
                 if m else (None, "—")),
    }
    rows = []
    for o in result.outcomes:
        rows_in, rows_out = counts[o.stage]
        rows.append([o.stage, o.status, o.reason, o.seconds, rows_in, rows_out])
    return rows


def _times(fs: HadoopFs, output: str, result) -> dict[str, float]:
    """Seconds of every sub-stage, from the records of the runs that produced the outputs."""
    seconds = {}
    for o in result.outcomes:
        text = fs.read_text(f"{output}/_stages/{o.stage}.json")
        recorded = json.loads(text)["stage_seconds"] if text else {}
        for name, value in sorted(recorded.items(), key=lambda kv: -kv[1]):  # slowest first
            seconds[f"{o.stage}: {name}"] = value
    return seconds


def write_prepare_report(fs: HadoopFs, output: str, result) -> str:
    """Write ``report.html`` and its PNGs; returns the page's path."""
    parts = []
    rows = stage_rows(result)
    if rows:
        marked = [[r[0], tag(r[1], r[1]), r[2], Raw(f"{r[3]:,.1f}"), *r[4:]] for r in rows]
        stage_table = table(["stage", "this run", "why", "seconds", "rows in", "rows out"], marked,
                            {"seconds", "rows in"})
        times = _times(fs, output, result)
        if times:
            fs.write_bytes(f"{output}/report/{STAGES_IMAGE}", charts.stage_seconds(times))
        parts.append(section("Stages", stage_table,
                             paragraph("Seconds are those of the run that produced each output; a skipped "
                                       "stage reused a verified output made with the same settings and input.",
                                       "note"),
                             *([figure(f"report/{STAGES_IMAGE}", "Wall-clock seconds per sub-stage.",
                                       "stage times")] if times else [])))
    if result.stats:
        clusters = fs.read_text(f"{output}/dedup/report/clusters.json")
        parts += dedup.sections(result.stats, json.loads(clusters) if clusters else None, "dedup/report",
                                stage_chart=False)
    if result.manifest:
        for name, data in pack.images(result.manifest).items():
            fs.write_bytes(f"{output}/report/{name}", data)
        parts += pack.sections(result.manifest, "report")
    if not parts:
        parts.append(section("Nothing to report", paragraph("No stage output exists yet.", "note")))
    source = result.stats["input"] if result.stats else "?"
    path = f"{output}/report.html"
    fs.write_bytes(path, page("Corpus preparation report", f"{source} → {output}", parts).encode())
    return path
