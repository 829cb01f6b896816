"""Hostile input, table-driven, against the three jobs: ``jobs/dedup.py``, ``jobs/pack.py``, ``jobs/prepare.py``.

Three kinds of case, as ``docs/operations.md`` ("Bad input: what is refused, what is rejected, what
is never touched") sorts them:

* **refused before Spark starts**: a bad option value, an output that would destroy the
  input, an input without files, a bad tokenizer file. Exit 2, one ``error:`` line, and Spark
  is never started (``SparkSession.Builder.getOrCreate`` fails the test if called).
* **refused once Spark has read the schema**: a missing or mistyped text column, files that
  are not of the format, a JSONL file without one object. Exit 2, one line.
* **rejected records**: one corpus holding every bad and awkward line; each job exits 0, every
  bad line is in ``rejected/`` verbatim with its reason, every other line is a document, and
  the counts add up (input = kept + duplicates + rejected).

Plus Ctrl-C: on a real process (exit 130, one line, no traceback), and in this process
(checkpoints kept, the same command resumes).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from tests.conftest import ROOT, train_local_tokenizer
from tests.pipelines.dedup.dedup_helpers import read_rows

JOBS = ("dedup", "pack", "prepare")
SAMPLE = os.path.join(ROOT, "samples", "hf_public_repos_sample.parquet")
INTERRUPTED = "interrupted; rerun the same command to resume"


def _main(job: str):
    return importlib.import_module(f"jobs.{job}").main


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(n))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """An input directory with one JSONL file, an empty directory, a tokenizer file, a non-JSON file."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "in").mkdir()
    rng = random.Random(3)
    texts = [_words(rng, 40) for _ in range(30)]
    (root / "in" / "corpus.jsonl").write_text("".join(json.dumps({"content": t}) + "\n" for t in texts))
    (root / "empty").mkdir()
    (root / "empty" / "_SUCCESS").write_text("")  # not a data file
    train_local_tokenizer(texts, root / "tokenizer.json", 300, ("<|pad|>", "<|endoftext|>"))
    (root / "not-json.txt").write_text("this is not a tokenizer")
    (root / "exists").mkdir()
    os.symlink(root / "in", root / "link-to-in")
    return root


def _tokenizer_args(job: str, paths) -> list[str]:
    return [] if job == "dedup" else ["--tokenizer", str(paths / "tokenizer.json"), "--seq-len", "64",
                                      "--num-shards", "1"]


PROGRESS_LINE = re.compile(r"\d\d:\d\d:\d\d (INFO|WARNING) corpus_prep[.\w]*: ")


def _one_error_line(capsys) -> str:
    """The error is one line, the last on stderr; anything before it is the progress log."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert all(PROGRESS_LINE.match(line) for line in lines[:-1]), err
    return lines[-1]


HOLDS = r" or a directory holding it; replacing it would delete the input: choose an output outside it"
INSIDE = r"; the output would become part of the input: choose an output outside it"
# (case, jobs it applies to, argv with {root} for the paths fixture, the message after "error: ", a regex)
REFUSED_BEFORE_SPARK = [
    ("output is the input (--overwrite)", JOBS, "--input {root}/in --output {root}/in --overwrite",
     r"--output '/\S+/in' is the input '/\S+/in'" + HOLDS),
    ("output is a parent of the input", JOBS, "--input {root}/in/corpus.jsonl --output {root} --overwrite",
     r"--output '/\S+' is the input '/\S+/in/corpus\.jsonl'" + HOLDS),
    ("output is the input via a symlink", JOBS, "--input {root}/link-to-in --output {root}/in --overwrite",
     r"--output '/\S+/in' is the input '/\S+/link-to-in'" + HOLDS),
    ("output is the input as a file:// URI with a slash", JOBS,
     "--input {root}/in/ --output file://{root}/in/ --overwrite",
     r"--output 'file:///\S+/in/?' is the input '/\S+/in/'" + HOLDS),
    ("output is the input through ..", ("dedup",), "--input {root}/in --output {root}/empty/../in --overwrite",
     r"--output '/\S+/empty/\.\./in' is the input '/\S+/in'" + HOLDS),
    ("output inside the input directory", JOBS, "--input {root}/in --output {root}/in/out",
     r"--output '/\S+/in/out' is inside the input '/\S+/in'" + INSIDE),
    ("output inside a glob's directory", JOBS, "--input {root}/in/*.jsonl --output {root}/in/out",
     r"--output '/\S+/in/out' is inside the input '/\S+/in/\*\.jsonl'" + INSIDE),
    ("input an empty directory", JOBS, "--input {root}/empty --output {root}/out",
     r"no input files in '.*/empty' \(names starting with '_' or '\.' are not read\)"),
    ("glob matching nothing", JOBS, "--input {root}/in/*.parquet --output {root}/out",
     r"no input files match '.*/in/\*\.parquet'"),
    ("glob matching nothing, --input-format parquet", JOBS,
     "--input {root}/in/*.parquet --input-format parquet --output {root}/out",
     r"no input files match '.*/in/\*\.parquet'"),
    ("input missing", JOBS, "--input {root}/missing --output {root}/out", r"input path '.*/missing' does not exist"),
    ("output exists without --overwrite", ("dedup", "pack"), "--input {root}/in --output {root}/exists",
     r"output '.*/exists' already exists; pass --overwrite to replace it"),
    ("--num-perm 0", ("dedup", "prepare"), "--input {root}/in --output {root}/out --num-perm 0",
     r"--num-perm must be in \[1, 8192\]"),
    ("--num-perm 100000", ("dedup", "prepare"), "--input {root}/in --output {root}/out --num-perm 100000",
     r"--num-perm must be in \[1, 8192\]"),
    ("--bands 0 --rows 0", ("dedup", "prepare"), "--input {root}/in --output {root}/out --bands 0 --rows 0",
     r"--bands and --rows must be at least 1 \(0 would turn near-duplicate detection off\)"),
    ("--bands without --rows", ("dedup",), "--input {root}/in --output {root}/out --bands 4",
     r"--bands and --rows must be given together"),
    ("--threshold 1.5", ("dedup", "prepare"), "--input {root}/in --output {root}/out --threshold 1.5",
     r"--threshold must be in \(0, 1\)"),
    ("--ngram 1000", ("dedup",), "--input {root}/in --output {root}/out --ngram 1000", r"--ngram must be in \[1, 64\]"),
    ("--driver-memory lots", JOBS, "--input {root}/in --output {root}/out --driver-memory lots",
     r"--driver-memory 'lots' is not a JVM memory size \(digits and an optional unit k, m, g or t: 4g, 512m\)"),
    ("--driver-memory 100m", JOBS, "--input {root}/in --output {root}/out --driver-memory 100m",
     r"--driver-memory '100m' is below Spark's minimum; give at least 512m"),
    ("--master nonsense", JOBS, "--input {root}/in --output {root}/out --master nonsense",
     r"--master 'nonsense' is not a Spark master URL \(local\[N\], local\[\*\], spark://HOST:PORT, yarn, k8s://URL\)"),
    ("--output empty", ("dedup", "pack"), "--input {root}/in --output=", r"--output is empty"),
    ("--seq-len 1", ("pack", "prepare"), "--input {root}/in --output {root}/out --seq-len 1",
     r"--seq-len must be in \[2, 65535\] \(positions are stored as uint16\)"),
    ("tokenizer file missing", ("pack", "prepare"),
     "--input {root}/in --output {root}/out --tokenizer {root}/nope.json",
     r"tokenizer file '.*/nope\.json' does not exist"),
    ("tokenizer file not JSON", ("pack", "prepare"),
     "--input {root}/in --output {root}/out --tokenizer {root}/not-json.txt",
     r"'/\S+/not-json\.txt' is not a tokenizers JSON file: expected ident at line 1 column 2"),
    ("unknown EOS token", ("pack", "prepare"), "--input {root}/in --output {root}/out --eos-token </s>",
     r"EOS token '</s>' is not in '/\S+/tokenizer\.json'; its added tokens are \['<\|endoftext\|>', '<\|pad\|>'\] "
     r"\(choose one with --eos-token\)"),
]


def _refused_cases():
    for case, jobs, argv, message in REFUSED_BEFORE_SPARK:
        for job in jobs:
            yield pytest.param(job, argv, message, id=f"{job}: {case}")


@pytest.mark.parametrize("job,argv,message", list(_refused_cases()))
def test_refused_before_spark_starts(job, argv, message, paths, capsys, monkeypatch):
    def no_spark(self):
        raise AssertionError("Spark was started")

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", no_spark)
    before = sorted(os.listdir(paths / "in"))
    args = [*_tokenizer_args(job, paths), *argv.format(root=paths).split()]  # the case's options win
    if job == "prepare":  # it has no --overwrite: it always replaces its stage outputs
        args.remove("--overwrite") if "--overwrite" in args else None
    assert _main(job)(args) == 2
    assert re.fullmatch(f"error: {message}", _one_error_line(capsys))
    assert sorted(os.listdir(paths / "in")) == before == ["corpus.jsonl"]  # the input is never touched
    assert not (paths / "out").exists()


@pytest.mark.parametrize("job", JOBS)
def test_argparse_errors_are_one_line_exit_2(job, capsys):
    with pytest.raises(SystemExit) as exit_:
        _main(job)(["--input", "x", "--output", "y", "--driver-memory", "4g", "--num-perm" if job != "pack"
                    else "--seq-len", "many"])
    assert exit_.value.code == 2
    assert re.fullmatch(r"error: argument --(num-perm|seq-len): invalid int value: 'many' \(see jobs/\w+\.py --help\)",
                        _one_error_line(capsys))


def test_output_is_the_input_is_refused_by_the_real_command_and_the_input_survives(paths):
    """The destructive case, end to end: a subprocess, no Spark, exit 2, one line, input intact."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "jobs", "dedup.py"), "--input", str(paths / "in"),
                           "--output", str(paths / "in"), "--overwrite"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "or a directory holding it" in proc.stderr
    assert sorted(os.listdir(paths / "in")) == ["corpus.jsonl"]


@pytest.mark.parametrize("input_path,output,refused", [
    ("gs://bucket/corpus", "gs://bucket/corpus/", "holding it"),
    ("gs://bucket/corpus/*.jsonl", "gs://bucket", "holding it"),
    ("gs://bucket/corpus/*.jsonl", "gs://bucket/corpus/out", "inside"),
    ("hdfs://nn/data/in", "hdfs://nn/data/./in/../in", "holding it"),
    ("gs://bucket/corpus", "gs://other/corpus", None),  # another bucket
    ("gs://bucket/corpus", "gs://bucket/corpus-dedup", None),  # a sibling sharing a prefix
    ("gs://bucket/corpus", "/bucket/corpus", None),  # another filesystem
    ("file://localhost/tmp/x/in", "/tmp/x", "holding it"),
    ("/data/{a,b}/*.jsonl", "/data/out", "inside"),  # Hadoop braces: the fixed part is /data
])
def test_paths_compare_by_filesystem_and_normalised_path(input_path, output, refused):
    from pipelines.errors import UsageError
    from pipelines.io.paths import check_apart

    if refused is None:
        check_apart(input_path, output)
    else:
        with pytest.raises(UsageError, match=refused):
            check_apart(input_path, output)


def test_relative_paths_are_resolved(tmp_path, monkeypatch):
    from pipelines.errors import UsageError
    from pipelines.io.paths import check_paths, input_files

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("{}\n")
    (tmp_path / "in" / ".hidden").mkdir()
    (tmp_path / "in" / ".hidden" / "b.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path / "in")
    with pytest.raises(UsageError, match="holding it"):
        check_paths(".", "../in/", overwrite=True)
    assert input_files("./") == ["./a.jsonl"]  # names starting with '.' or '_' are not data
    assert input_files("{a,b}.jsonl") is None  # Hadoop-only glob syntax: listed once Spark runs


# ---------------------------------------------------------------------------------------------
# Refused once Spark has read the input's schema


@pytest.fixture(scope="module")
def bad_inputs(paths):
    root = paths / "bad"
    root.mkdir()
    pq.write_table(pa.table({"body": ["a text"], "url": ["u"]}), root / "no-text-column.parquet")
    pq.write_table(pa.table({"content": [1, 2]}), root / "int-text.parquet")
    (root / "not-parquet").mkdir()
    (root / "not-parquet" / "part-0.parquet").write_text("hello, I am text")
    (root / "no-objects.jsonl").write_bytes(b"not json\n[1, 2]\nnull\n\"a string\"\n")
    return root


REFUSED_AFTER_SCHEMA = [
    ("no text column", "no-text-column.parquet",
     r"text column 'content' not found; the input has columns \['body', 'url'\] \(choose one with --text-column\)"),
    ("text column an integer", "int-text.parquet", r"text column 'content' has type bigint; expected a string"),
    ("files that are not Parquet", "not-parquet",
     r"cannot read '.*not-parquet' as parquet: .*part-0\.parquet is not a Parquet file.*"),
    ("JSONL without one object", "no-objects.jsonl", r"no JSON objects found in '.*no-objects\.jsonl'"),
]


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("case,name,message", REFUSED_AFTER_SCHEMA, ids=[c[0] for c in REFUSED_AFTER_SCHEMA])
def test_refused_once_the_schema_is_read(spark, job, case, name, message, bad_inputs, paths, capsys, tmp_path):
    args = ["--input", str(bad_inputs / name), "--output", str(tmp_path / "out"), *_tokenizer_args(job, paths)]
    assert _main(job)(args) == 2
    assert re.fullmatch(f"error: {message}", _one_error_line(capsys))
    assert not (tmp_path / "out").exists() or job == "prepare"
    assert not [n for n in os.listdir(tmp_path) if "staging" in n]


# ---------------------------------------------------------------------------------------------
# Rejected records: one corpus, every job, every line accounted for

DOCUMENT = None  # the line is a document
RNG = random.Random(11)
TEXTS = [_words(RNG, 50) for _ in range(8)]
# (case, raw line, DOCUMENT or the reason it is rejected with)
RECORDS = [
    *[(f"plain {k}", json.dumps({"content": t, "n": k}).encode(), DOCUMENT) for k, t in enumerate(TEXTS)],
    ("exact copy", json.dumps({"content": TEXTS[0], "n": 0}).encode(), DOCUMENT),
    ("mixed scripts", json.dumps({"content": "données naïve café 東京 データ 🙂 مرحبا Здравствуйте " * 3},
                                 ensure_ascii=False).encode(), DOCUMENT),
    ("escaped NUL in the text", b'{"content": "before \\u0000 after the nul byte here"}', DOCUMENT),
    ("null text", b'{"content": null, "n": 100}', DOCUMENT),
    ("empty text", b'{"content": "", "n": 101}', DOCUMENT),
    ("no text field", b'{"n": 102}', DOCUMENT),
    ("byte-order mark", b'\xef\xbb\xbf{"content": "a file saved by a windows editor starts this way"}', DOCUMENT),
    ("surrounding whitespace", b' \t{"content": "padded with blanks on both sides of the object"}  \t', DOCUMENT),
    ("200 KB document", json.dumps({"content": _words(RNG, 30_000)}).encode(), DOCUMENT),
    ("repeated key", b'{"content":"a","content":"b"}', "malformed JSON: repeated key 'content'"),
    ("trailing garbage", b'{"content":"x"} trailing garbage', "malformed JSON: text after the first value"),
    ("two objects on one line", b'{"content":"x"} {"content":"y"}', "malformed JSON: text after the first value"),
    ("a bracket closing the wrapper", b'{"content":"x"}] junk', "malformed JSON: text after the first value"),
    ("a comma and a value", b'{"content":"x"}, 5', "malformed JSON: text after the first value"),
    ("raw NUL after the object", b'{"content":"x"}\x00', "malformed JSON: text after the first value"),
    ("raw NUL inside a string", b'{"content":"raw \x00 byte"}', "malformed JSON"),
    ("truncated", b'{"content": "cut off in the midd', "malformed JSON"),
    ("single quotes", b"{'content': 'python repr'}", "malformed JSON"),
    ("trailing comma", b'{"content": "x",}', "malformed JSON"),
    ("string over the parser limit", b'{"content": "' + b"a" * 20_000_001 + b'"}',
     "malformed JSON, or a string over 20,000,000 characters (the limit of Spark's JSON parser)"),
    ("keys differing only in case", b'{"content":"a","Content":"b"}',
     "key 'Content' differs only in case from another key (columns ignore case)"),
    ("invalid UTF-8", b'{"content": "bytes \xff\xfe here"}', "invalid UTF-8"),
    ("number text", b'{"content": 12345}', "text field 'content' is BIGINT, not a string"),
    ("object text", b'{"content": {"k": 1}}', "text field 'content' is OBJECT<k: BIGINT>, not a string"),
    ("array text", b'{"content": ["a", "b"]}', "text field 'content' is ARRAY<STRING>, not a string"),
    ("null line", b"null", "JSON value is not an object"),
    ("array line", b'[1, "x"]', "JSON value is not an object"),
]
DOCUMENTS = [line for _, line, reason in RECORDS if reason is DOCUMENT]
REJECTED = sorted((line, reason) for _, line, reason in RECORDS if reason is not DOCUMENT)


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile_corpus") / "corpus.jsonl"
    path.write_bytes(b"\n".join(line for _, line, _ in RECORDS) + b"\n\n   \n")  # blank lines are not records
    return path


def _rejected(table_dir) -> list[tuple[bytes, str]]:
    rows = read_rows(table_dir, sort_key="record")
    assert all(r["source"].endswith("corpus.jsonl") for r in rows)
    return sorted((r["record"], r["reason"]) for r in rows)


def _rows(table_dir) -> int:
    return pq.read_table(str(table_dir)).num_rows


def _check_dedup(out) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    assert _rejected(out / "rejected") == REJECTED
    assert (stats["input_records"], stats["documents"], stats["rejected"]) == (len(RECORDS), len(DOCUMENTS),
                                                                              len(REJECTED))
    assert (stats["exact_duplicates"], stats["near_duplicates"], stats["empty"]) == (1, 0, 3)
    assert stats["kept"] + stats["exact_duplicates"] + stats["near_duplicates"] == stats["documents"]
    assert _rows(out / "data") + _rows(out / "duplicates") + _rows(out / "rejected") == len(RECORDS)
    return stats


def _check_pack(out, documents: int, rejected: list) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    stats = manifest["stats"]
    assert _rejected(out / "rejected") == rejected if rejected else _rows(out / "rejected") == 0
    assert stats["rejected_records"] == _rows(out / "rejected") == len(rejected)
    assert stats["input_documents"] == documents
    assert (stats["null_text"], stats["empty_text"]) == (2, 1)  # null text and no text field; empty text
    assert stats["documents"] == documents - 3 == manifest["totals"]["documents"]
    return manifest


@pytest.mark.parametrize("job", JOBS)
def test_every_bad_record_is_rejected_with_its_reason_and_the_counts_add_up(spark, job, hostile_corpus, paths,
                                                                             tmp_path, capsys):
    out = tmp_path / "out"
    assert _main(job)(["--input", str(hostile_corpus), "--output", str(out), *_tokenizer_args(job, paths)]) == 0
    capsys.readouterr()
    if job == "dedup":
        _check_dedup(out)
    elif job == "pack":
        _check_pack(out, len(DOCUMENTS), REJECTED)
    else:
        stats = _check_dedup(out / "dedup")
        _check_pack(out / "pack", stats["kept"], [])


# ---------------------------------------------------------------------------------------------
# Ctrl-C


def _staging_marker(parent, name: str):
    """A path under the job's staging directory, once it exists (the job is running Spark work then)."""
    for entry in os.listdir(parent):
        path = os.path.join(parent, entry, name)
        if entry.startswith(".out.staging-") and os.path.exists(path):
            return path
    return None


def test_ctrl_c_on_the_real_command_exits_130_with_one_line(tmp_path):
    """The case that printed seven py4j tracebacks: Ctrl-C (SIGINT to the process group) mid-job."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "jobs", "dedup.py"), "--input", SAMPLE, "--output",
                             str(out), "--master", "local[2]", "--shuffle-partitions", "4", "--driver-memory", "1g"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=ROOT, PYSPARK_PYTHON=sys.executable), cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while not _staging_marker(tmp_path, "") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the job ended before it started its Spark work"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    # Spark's console progress bar may still redraw after the line; it is not a message
    lines = [line for line in re.split(r"[\r\n]+", err) if line.strip() and not line.startswith("[Stage ")]
    assert lines[-1] == INTERRUPTED, err[-3000:]
    assert "Traceback" not in err and "py4j" not in err.lower(), err[-3000:]
    assert not out.exists()


def test_ctrl_c_keeps_the_checkpoints_and_the_same_command_resumes(spark, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--input", SAMPLE, "--output", str(out)]
    late = []
    previous = signal.signal(signal.SIGINT, lambda *_: late.append(True))  # a SIGINT after the job: not pytest's

    def interrupt_after_signatures():
        deadline = time.monotonic() + 300
        while not _staging_marker(tmp_path, "_work/signatures/_COMMITTED") and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_signatures, daemon=True).start()
    try:
        code = _main("dedup")(argv)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (code, late) == (130, [])
    assert capsys.readouterr().err.strip().splitlines()[-1] == INTERRUPTED
    assert _staging_marker(tmp_path, "_work/signatures/_COMMITTED") and not out.exists()
    assert _main("dedup")(argv) == 0
    resumed = json.loads((out / "stats.json").read_text())["resumed"]
    assert resumed["from_earlier_run"] and "signatures" in resumed["checkpoints_reused"]
