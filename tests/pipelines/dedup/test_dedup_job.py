"""The dedup job end to end: sample corpus, determinism, input formats, bad input, options."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import KeepPolicy
from pipelines.io.publish import OutputExists
from pipelines.io.readers import InputError
from tests.conftest import ROOT
from tests.pipelines.dedup.dedup_helpers import dedup, read_rows

SAMPLE = os.path.join(ROOT, "samples", "hf_public_repos_sample.parquet")


def _normalised(text):
    return " ".join(text.lower().split())


def test_sample_exact_copies_collapse_and_reruns_are_identical(spark, tmp_path):
    first = dedup(spark, SAMPLE, tmp_path / "a").stats
    dedup(spark, SAMPLE, tmp_path / "b")
    source = pq.read_table(SAMPLE).to_pylist()
    kept = read_rows(tmp_path / "a" / "data")
    removed = read_rows(tmp_path / "a" / "duplicates")
    # every group of exact copies keeps exactly one member
    groups = {}
    for row in source:
        groups.setdefault(_normalised(row["content"]), []).append(row)
    kept_texts = [_normalised(r["content"]) for r in kept]
    assert len(kept_texts) == len(set(kept_texts))
    assert set(kept_texts) >= {t for t, rows in groups.items() if len(rows) > 1}
    assert first["exact_duplicates"] == sum(len(r) - 1 for r in groups.values()) == 3
    # every input column is preserved, and ids + removed account for all 100 rows exactly once
    assert set(kept[0]) == {"repo_id", "file_path", "content", "doc_id"}
    ids = [r["doc_id"] for r in kept] + [r["doc_id"] for r in removed]
    assert len(ids) == len(set(ids)) == len(source) == first["input_records"]
    kept_ids = {r["doc_id"] for r in kept}
    assert all(r["cluster_id"] in kept_ids for r in removed)
    # a second run gives the same content
    assert read_rows(tmp_path / "b" / "data") == kept
    assert read_rows(tmp_path / "b" / "duplicates") == removed
    assert (tmp_path / "a" / "_SUCCESS").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "staging left behind"
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["bands"] * stats["rows"] <= 256
    assert set(stats["stage_seconds"]) >= {"signatures", "lsh", "verify", "components"}


def test_ids_do_not_depend_on_file_layout_or_order(spark, tmp_path):
    rows = pq.read_table(SAMPLE).to_pylist()
    rows.append(dict(rows[0]))  # an identical row still gets its own id
    one = tmp_path / "one"
    one.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), one / "all.parquet")
    many = tmp_path / "many"
    many.mkdir()
    reordered = rows[::-1]
    for k in range(3):
        pq.write_table(pa.Table.from_pylist(reordered[k::3]), many / f"part-{k}.parquet")
    dedup(spark, one, tmp_path / "out1")
    dedup(spark, many, tmp_path / "out2")
    assert read_rows(tmp_path / "out1" / "data") == read_rows(tmp_path / "out2" / "data")
    assert read_rows(tmp_path / "out1" / "duplicates") == read_rows(tmp_path / "out2" / "duplicates")
    assert len(read_rows(tmp_path / "out1" / "data")) + len(read_rows(tmp_path / "out1" / "duplicates")) == 101


def test_jsonl_bad_records_are_rejected_with_reasons(spark, tmp_path):
    lines = [
        b'{"content": "a perfectly fine document about spark and arrow batches", "n": 1}',
        b'{"content": "a perfectly fine document about spark and arrow batches", "n": 1}',
        b'{"content": 12345, "n": 2}',
        b'{"content": {"nested": true}, "n": 3}',
        b'this is not json',
        b'{"content": "bad bytes \xff\xfe here", "n": 5}',
        b'["a", "list"]',
        b'{"content": null, "n": 6}',
        b'{"content": "", "n": 7}',
        b'{"n": 8}',
        b'',
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    stats = dedup(spark, path, tmp_path / "out").stats
    rejected = read_rows(tmp_path / "out" / "rejected", sort_key="record")
    assert {r["record"] for r in rejected} == set(lines[2:7])  # verbatim, invalid bytes included
    reasons = sorted(r["reason"] for r in rejected)
    assert reasons == sorted(["text field 'content' is BIGINT, not a string",
                              "text field 'content' is OBJECT<nested: BOOLEAN>, not a string",
                              "malformed JSON", "invalid UTF-8", "JSON value is not an object"])
    assert all(r["record"] and r["source"].endswith("in.jsonl") for r in rejected)
    assert stats["rejected"] == 5 and stats["documents"] == 5 and stats["input_records"] == 10
    assert stats["empty"] == 3 and stats["exact_duplicates"] == 1 and stats["kept"] == 4


def test_missing_text_column_names_the_columns(spark, tmp_path):
    pq.write_table(pa.table({"body": ["x"], "url": ["u"]}), tmp_path / "in.parquet")
    with pytest.raises(InputError, match=r"text column 'content' not found.*\['body', 'url'\]"):
        dedup(spark, tmp_path / "in.parquet", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_non_string_text_column_is_a_clear_error(spark, tmp_path):
    pq.write_table(pa.table({"content": [1, 2]}), tmp_path / "in.parquet")
    with pytest.raises(InputError, match="has type bigint; expected a string"):
        dedup(spark, tmp_path / "in.parquet", tmp_path / "out")


def test_binary_text_is_decoded_and_undecodable_rows_rejected(spark, tmp_path):
    pq.write_table(pa.table({"content": pa.array([b"hello there world", b"\xff\xfe", None], pa.binary())}),
                   tmp_path / "in.parquet")
    stats = dedup(spark, tmp_path / "in.parquet", tmp_path / "out").stats
    assert (stats["documents"], stats["rejected"], stats["empty"]) == (2, 1, 1)
    assert read_rows(tmp_path / "out" / "rejected", "reason")[0]["reason"] == "invalid UTF-8 in text column"


def test_existing_output_is_refused_unless_overwrite(spark, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExists):
        dedup(spark, SAMPLE, out)
    assert (out / "keep.txt").read_text() == "precious"
    dedup(spark, SAMPLE, out, overwrite=True)
    assert (out / "_SUCCESS").exists() and not (out / "keep.txt").exists()


def test_text_fallback_keep_policies_and_hf_input(spark, tmp_path):
    from datasets import Dataset

    base = "the quick brown fox jumps over the lazy dog near the river bank today " * 5
    texts = [base, base + "extra words", base + "more", "something else entirely different here now"]
    # "longest" keeps c (texts[1]); "priority" keeps b (texts[2], the highest score): different survivors
    Dataset.from_dict({"text": texts, "score": [1, 0, 5, 3], "key": ["d", "c", "b", "a"]}).save_to_disk(
        str(tmp_path / "hf"))
    longest = dedup(spark, tmp_path / "hf", tmp_path / "longest", keep=KeepPolicy.LONGEST, id_column="key")
    assert longest.stats["text_column"] == "text" and "using 'text'" in longest.stats["notes"][0]
    assert [r["key"] for r in read_rows(tmp_path / "longest" / "data")] and \
        sorted(r["key"] for r in pq.read_table(str(tmp_path / "longest" / "data")).to_pylist()) == ["a", "c"]
    dedup(spark, tmp_path / "hf", tmp_path / "prio", keep=KeepPolicy.PRIORITY, keep_priority_column="score")
    assert sorted(r["key"] for r in pq.read_table(str(tmp_path / "prio" / "data")).to_pylist()) == ["a", "b"]


def test_cli_reports_input_errors_without_a_traceback(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "in.parquet")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "jobs", "dedup.py"), "--input",
                           str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out"), "--master", "local[1]"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "error: text column 'content' not found" in proc.stderr
    assert "Traceback" not in proc.stderr
