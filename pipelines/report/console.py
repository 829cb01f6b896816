"""The summary printed at the end of ``jobs/prepare.py``: a few lines a person reads in a terminal or a driver log."""

from __future__ import annotations

from pipelines.report.prepare import stage_rows


def summary(result) -> str:
    lines = [f"corpus-prep: {result.output}"]
    for stage, status, reason, seconds, rows_in, rows_out in stage_rows(result):
        shown_in = f"{rows_in:,} in" if rows_in is not None else ""
        lines.append(f"  {stage:<6} {status:<8} {seconds:>9.1f} s  {shown_in:>14}  → {rows_out}"
                     + (f"   ({reason})" if status == "ran" else ""))
    s, m = result.stats, result.manifest
    if s:
        lines.append(f"  dedup: {s['exact_duplicates']:,} exact + {s['near_duplicates']:,} near duplicates removed "
                     f"in {s['clusters']:,} clusters (largest {s['largest_cluster']:,}); "
                     f"LSH {s['bands']}x{s['rows']} at threshold {s['config']['lsh']['threshold']:g}")
    if m:
        lines.append(f"  pack: {m['totals']['shards']:,} shard{'s' if m['totals']['shards'] != 1 else ''}, seq_len {m['seq_len']:,}, "
                     f"fill {m['stats']['fill_rate']:.1%}")
    if result.report:
        lines.append(f"  report: {result.report}")
    return "\n".join(lines)
