"""jobs/prepare.py end to end on real Spark: stages, verified skipping, fingerprints, reports, errors."""

from __future__ import annotations

import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.dedup.checkpoints import run_key
from pipelines.io.hadoop import HadoopFs
from pipelines.pack.verify import verify_shards
from pipelines.prepare.cli import prepare_config, prepare_parser
from pipelines.prepare.pipeline import PrepareError, run_prepare
from tests.conftest import train_local_tokenizer

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare_corpus")
    rng = random.Random(7)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) for _ in range(40)]
    texts += [texts[0], texts[0], texts[3]]  # exact copies
    near = max(texts, key=len).split()  # one word changed in the longest text: similarity well above 0.7
    near[3] = "<script>alert(1)</script>"  # a near copy, with markup the report must escape
    texts.append(" ".join(near))
    data = root / "in"
    data.mkdir()
    pq.write_table(pa.table({"content": texts}), data / "part-0.parquet")
    train_local_tokenizer(texts, root / "tokenizer.json", 320, ("<|pad|>", "<|endoftext|>"))
    return {"input": str(data), "tokenizer": str(root / "tokenizer.json"), "texts": texts}


def _cfg(corpus, out, *extra):
    args = prepare_parser().parse_args(["--input", corpus["input"], "--output", str(out), "--tokenizer",
                                        corpus["tokenizer"], "--seq-len", "64", "--num-shards", "2", *extra])
    return prepare_config(args)


def _statuses(result):
    return {o.stage: o.status for o in result.outcomes}


@pytest.fixture(scope="module")
def first_run(spark, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepare") / "run"
    return out, run_prepare(_cfg(corpus, out), spark)


def test_first_run_writes_every_stage_and_the_report(first_run):
    out, result = first_run
    assert _statuses(result) == {"dedup": "ran", "pack": "ran"}
    assert (result.stats["exact_duplicates"], result.stats["near_duplicates"]) == (3, 1)
    assert result.manifest["stats"]["documents"] == result.stats["kept"] == 40
    assert verify_shards(str(out / "pack"))["files"] == 4
    page = (out / "report.html").read_text()
    for name in ("report/stages.png", "dedup/report/s_curve.png", "dedup/report/cluster_sizes.png",
                 "report/pack_fill.png"):
        assert f'src="{name}"' in page and (out / name).stat().st_size > 1000
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "3 documents" in page  # the largest cluster: texts[0] and its two copies
    assert (out / "dedup" / "report.html").exists() and (out / "dedup" / "report" / "clusters.json").exists()


def test_report_command_rebuilds_the_page_of_an_existing_run(first_run, capsys):
    from jobs.__main__ import main

    out, _ = first_run
    (out / "report.html").unlink()
    assert main(["report", "--output", str(out), "--quiet"]) == 0
    assert f"report: {out}/report.html" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert 'src="report/pack_fill.png"' in page and 'src="dedup/report/s_curve.png"' in page


def test_rerun_skips_verified_stages_and_changed_settings_redo_only_what_they_affect(spark, corpus, first_run):
    out, first = first_run
    again = run_prepare(_cfg(corpus, out), spark)
    assert _statuses(again) == {"dedup": "skipped", "pack": "skipped"}
    assert again.manifest == first.manifest
    longer = run_prepare(_cfg(corpus, out, "--seq-len", "128"), spark)
    assert _statuses(longer) == {"dedup": "skipped", "pack": "ran"}
    assert longer.outcomes[1].reason == "settings or input changed"
    assert json.loads((out / "pack" / "manifest.json").read_text())["seq_len"] == 128


def test_damaged_output_is_redone_not_trusted(spark, corpus, first_run):
    out, _ = first_run
    run_prepare(_cfg(corpus, out, "--stages", "pack"), spark)
    shard = next((out / "pack").rglob("*.tfrecord"))
    shard.write_bytes(shard.read_bytes()[:-5])  # truncated upload
    result = run_prepare(_cfg(corpus, out, "--stages", "pack"), spark)
    assert _statuses(result) == {"pack": "ran"}
    assert result.outcomes[0].reason.startswith("previous output unusable")
    verify_shards(str(out / "pack"))
    forced = run_prepare(_cfg(corpus, out, "--stages", "pack,report", "--force"), spark)
    assert [(o.stage, o.status, o.reason) for o in forced.outcomes] == [("pack", "ran", "--force")]


def test_input_fingerprint_follows_the_files(spark, corpus, tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    pq.write_table(pa.table({"content": ["a b c"]}), data / "a.parquet")
    cfg = _cfg({**corpus, "input": str(data)}, tmp_path / "run").dedup
    fs = HadoopFs(spark)
    before = run_key(fs, cfg)
    assert run_key(fs, cfg) == before
    pq.write_table(pa.table({"content": ["d e f"]}), data / "b.parquet")
    assert run_key(fs, cfg) != before
    other_threshold = _cfg({**corpus, "input": str(data)}, tmp_path / "run", "--threshold", "0.8").dedup
    assert run_key(fs, other_threshold) != run_key(fs, cfg)
    elsewhere = _cfg({**corpus, "input": str(data)}, tmp_path / "elsewhere").dedup
    assert run_key(fs, elsewhere) == run_key(fs, cfg)
    # files Spark does not read are not part of the input; the listing is Spark's own
    changed = run_key(fs, cfg)
    (data / "_SUCCESS").write_text("")
    (data / "_tmp").mkdir()
    pq.write_table(pa.table({"content": ["g h i"]}), data / "_tmp" / "c.parquet")
    assert run_key(fs, cfg) == changed
    spark_files = sorted(f.replace("file:///", "file:/") for f in spark.read.parquet(str(data)).inputFiles())
    assert [f.path for f in fs.files(str(data))] == spark_files and len(spark_files) == 2


def test_pack_alone_needs_a_verified_dedup_output(spark, corpus, tmp_path):
    (tmp_path / "run" / "dedup" / "data").mkdir(parents=True)  # a partial directory is not an output
    with pytest.raises(PrepareError, match="run the dedup stage first"):
        run_prepare(_cfg(corpus, tmp_path / "run", "--stages", "pack"), spark)


def test_cli_errors_are_one_line(spark, corpus, tmp_path, capsys):
    from jobs.prepare import main

    code = main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "run"), "--tokenizer",
                 corpus["tokenizer"], "--stages", "dedup"])
    err = capsys.readouterr().err
    # the progress log comes first on stderr; the error is its one last line
    assert code == 2 and err.splitlines()[-1].startswith("error: ") and "does not exist" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["--input", "x", "--output", "y", "--stages", "dedup,train"])
    assert "choose from dedup,pack,report" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run" / "dedup")
