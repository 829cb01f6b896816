"""Report pieces: charts are real PNGs and reproducible, pages escape text, sections show the numbers."""

from __future__ import annotations

from pipelines.prepare.pipeline import PrepareResult, StageOutcome
from pipelines.report import charts, dedup, pack
from pipelines.report.console import summary
from pipelines.report.html import excerpt, fmt, page, table

PNG = b"\x89PNG\r\n\x1a\n"
STATS = {"input": "in/", "input_records": 1200, "documents": 1190, "rejected": 10, "empty": 2,
         "exact_duplicates": 30, "near_duplicates": 70, "kept": 1090, "clusters": 41, "largest_cluster": 9,
         "bands": 36, "rows": 7, "candidate_edges": 300, "verified_edges": 120, "estimate_passed": 125,
         "exact_verification": {"checked": 40, "passed": 20, "estimate_passed_exact_failed": 7,
                                "estimate_failed_exact_passed": 2},
         "cc_rounds": 3, "stage_seconds": {"read": 1.5, "lsh": 0.25},
         "config": {"lsh": {"threshold": 0.7, "verify": "exact"}, "minhash": {"num_perm": 256}}}
CLUSTERS = {"histogram": [[2, 30], [3, 10], [9, 1]],
            "largest": [{"cluster_id": 5, "size": 9, "members": [
                {"doc_id": 5, "role": "survivor", "similarity": None, "text": "def f():\n\n\n\n    return '<b>'"},
                {"doc_id": -7, "role": "near", "similarity": 0.81, "text": None}]}]}


def test_charts_are_deterministic_pngs():
    for draw in (lambda: charts.s_curve(36, 7, 0.7), lambda: charts.cluster_sizes([(2, 30), (9, 1)]),
                 lambda: charts.cluster_sizes([]), lambda: charts.stage_seconds({"a": 1.0, "b": 2.5}),
                 lambda: charts.shard_fill([0.99, 0.97], 0.98)):
        first = draw()
        assert first.startswith(PNG) and len(first) > 2000
        assert draw() == first


def test_html_escapes_and_formats():
    assert fmt(1234567) == "1,234,567" and fmt(0.12345) == "0.123" and fmt(None) == "—" and fmt(True) == "yes"
    markup = table(["name", "n"], [["<i>x</i>", 5]], {"n"}).markup
    assert "&lt;i&gt;x&lt;/i&gt;" in markup and '<td class="num">5</td>' in markup
    cut = excerpt("a" * 50 + "\n\n\n\nb", 20).markup
    assert cut == '<div class="excerpt">' + "a" * 20 + "…</div>"
    assert excerpt("x\n\n\n\ny", 100).markup == '<div class="excerpt">x\n\ny</div>'  # blank runs collapsed
    assert page("T <1>", "s", []).startswith("<!DOCTYPE html>") and "T &lt;1&gt;" in page("T <1>", "s", [])


def test_dedup_sections_show_counts_curve_and_members():
    html = "".join(s.markup for s in dedup.sections(STATS, CLUSTERS, "report"))
    for expected in ("1,200", "30 (2.5%)", "70 (5.9%)", "36 bands of 7 rows", "probability 0.955",
                     'src="report/s_curve.png"', 'src="report/cluster_sizes.png"', "#1: 9 documents",
                     "&lt;b&gt;", "(text not available)", "0.810", 'src="report/dedup_stages.png"'):
        assert expected in html, expected
    without = "".join(s.markup for s in dedup.sections(STATS, None, "report", stage_chart=False))
    assert "cluster_sizes.png" not in without and "dedup_stages.png" not in without
    assert set(dedup.images(STATS, CLUSTERS["histogram"])) == set(dedup.IMAGES.values())


def _manifest():
    shard = {"rows": 10, "tokens": 600, "padding_tokens": 40, "documents": 12}
    return {"seq_len": 64, "vocab_size": 320, "packing": "best-fit", "shards": {"parquet": [shard, shard]},
            "tokenizer_source": {"file": "tok.json"},
            "totals": {"rows": 20, "tokens": 1200, "padding_tokens": 80, "documents": 24, "shards": 2},
            "stats": {"fill_rate": 1200 / 1280, "input_documents": 25, "null_text": 0, "empty_text": 1,
                      "documents_split": 3, "fraction_split": 0.125, "tokens_dropped": 0, "longest_document": 90}}


def test_pack_section_and_console_summary():
    m = _manifest()
    html = "".join(s.markup for s in pack.sections(m, "report"))
    assert "93.75%" in html and "20 rows of 64 tokens in 2 shards" in html and "3 (12.5%)" in html
    assert pack.images(m)[pack.IMAGE].startswith(PNG)
    result = PrepareResult("out", [StageOutcome("dedup", "skipped", 12.0, "verified"),
                                   StageOutcome("pack", "ran", 3.25, "settings or input changed")],
                           STATS, m, "out/report.html")
    text = summary(result)
    assert "dedup  skipped" in text and "1,200 in  → 1,090 documents kept" in text
    assert "(settings or input changed)" in text and "fill 93.8%" in text and "report: out/report.html" in text
