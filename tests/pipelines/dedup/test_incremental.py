"""Incremental dedup (``--save-index``, ``--against``, ``--update-index``) against its oracle.

The oracle is one run over all batches with every earlier batch ranked above every later one
(``--keep-priority batch``): ``dedup(B --against index(A))`` must keep exactly the ``B``
documents that ``dedup(A ∪ B)`` keeps. Every removed document must also be linked to a
document of exact word 5-gram Jaccard >= the threshold (computed here in plain Python).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks.incremental_cost import split_by_release
from benchmarks.synthetic_corpus import generate, jaccard, word_shingles
from jobs.dedup import main as dedup_main
from pipelines.config import IndexConfig, KeepPolicy
from pipelines.errors import InputError
from pipelines.prepare.cli import prepare_config, prepare_parser
from pipelines.prepare.pipeline import run_prepare
from tests.conftest import ROOT
from tests.pipelines.dedup.dedup_helpers import dedup

THRESHOLD = 0.7
SAMPLE = os.path.join(ROOT, "samples", "hf_public_repos_sample.parquet")


def _run(spark, corpus, out, **index):
    """One batch, ranked by its ``batch`` column (earlier batches higher), ids from ``id``."""
    return dedup(spark, corpus, out, id_column="id", keep=KeepPolicy.PRIORITY, keep_priority_column="batch",
                 index=IndexConfig(**{k: tuple(map(str, v)) if k == "against" else str(v) for k, v in index.items()}))


def _kept(out) -> set[int]:
    return set(pq.read_table(str(out / "data"), columns=["doc_id"]).column("doc_id").to_pylist())


def _removed(out) -> dict[int, dict]:
    return {r["doc_id"]: r for r in pq.read_table(str(out / "duplicates")).to_pylist()}


def _write_batches(root, ids, texts, batches) -> dict[int, str]:
    """``root/b{k}.parquet`` per batch value and ``root/all.parquet``: columns id, content, batch."""
    table = pa.table({"id": pa.array(ids, pa.int64()), "content": texts, "batch": pa.array(batches, pa.int32())})
    pq.write_table(table, root / "all.parquet")
    paths = {}
    for value in sorted(set(batches)):
        paths[value] = str(root / f"b{value}.parquet")
        pq.write_table(table.filter(pc.equal(table["batch"], value)), paths[value])
    return paths


def _planted(vocab_seed: int = 3) -> list[tuple[int, str, int]]:
    """``(id, text, batch)`` of cases a random split may miss (batch 2 = A, 1 = B):

    * X (kept in A) and X' = X plus 30 words (J 0.76: removed in A); Y = X' less its first
      30 words: J(Y, X') = 0.76 — uncertain, decided by the exact Jaccard of X' — and
      J(Y, X) = 0.52. Y matches only a removed document of A;
    * Z: X' in capitals, an exact copy of that removed document;
    * a text without word characters in A, and its copy with other spacing in B.

    B also holds X' itself again, id and all (a row crawled twice): see :func:`corpus`.
    """
    rng = np.random.default_rng(vocab_seed)
    words = [f"w{k}" for k in rng.integers(0, 10**9, 130)]
    x, x_plus = " ".join(words[:100]), " ".join(words)
    y = " ".join(words[30:])
    return [(10**9 + 1, x, 2), (10**9 + 2, x_plus, 2), (10**9 + 3, y, 1), (10**9 + 4, x_plus.upper(), 1),
            (10**9 + 5, "!!! ... ???", 2), (10**9 + 6, "!!!   ...\n???", 1)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A synthetic corpus with planted families and version chains (consecutive versions at
    J 0.6–0.8), split at random into three batches (2 = A, 1 = B, 0 = C), plus :func:`_planted`."""
    root = tmp_path_factory.mktemp("incremental")
    c = generate(n_families=70, copies=3, short_docs=20, exact_families=8, boilerplate_families=10,
                 version_chains=40, seed=21)
    batches = np.random.default_rng(4).choice([2, 1, 0], size=len(c.ids), p=[0.5, 0.3, 0.2]).tolist()
    planted = _planted()
    ids = c.ids + [p[0] for p in planted]
    texts = c.texts + [p[1] for p in planted]
    batches += [p[2] for p in planted]
    paths = _write_batches(root, ids, texts, batches)
    # X' again in B: one run over both would refuse the repeated id, so the joint run goes without it
    b = pq.read_table(paths[1])
    again = pa.table({"id": pa.array([planted[1][0]], pa.int64()), "content": [planted[1][1]],
                      "batch": pa.array([1], pa.int32())})
    pq.write_table(pa.concat_tables([b, again]), paths[1])
    return {"root": root, "paths": paths, "text": dict(zip(ids, texts)), "batch": dict(zip(ids, batches)),
            "family": dict(zip(c.ids, c.family)), "new": {d for d, k in zip(ids, batches) if k == 1} | {planted[1][0]}}


@pytest.fixture(scope="module")
def two_batches(spark, corpus):
    root, paths = corpus["root"], corpus["paths"]
    a = _run(spark, paths[2], root / "out_a", save=root / "idx_a")
    os.rename(paths[2], paths[2] + ".moved")  # runs against the index cannot read A's input
    b = _run(spark, paths[1], root / "out_b", against=[root / "idx_a"], save=root / "idx_b",
             update=root / "idx_ab")
    everything = pq.read_table(root / "all.parquet")
    pq.write_table(everything.filter(pc.greater_equal(everything["batch"], 1)), root / "ab.parquet")
    joint = _run(spark, root / "ab.parquet", root / "out_ab")
    return a, b, joint


def _linked_at_threshold(removed: dict, text: dict) -> list[tuple[int, int, float]]:
    """Removed documents whose ``linked_to`` is below the threshold by exact Jaccard (should be none)."""
    bad = []
    for doc, row in removed.items():
        j = jaccard(word_shingles(text[doc], 5), word_shingles(text[row["linked_to"]], 5))
        if j < THRESHOLD:
            bad.append((doc, row["linked_to"], j))
    return bad


def test_the_new_batch_keeps_exactly_what_one_run_over_both_keeps(corpus, two_batches):
    _, b, _ = two_batches
    root = corpus["root"]
    new = corpus["new"]
    assert _kept(root / "out_b") == _kept(root / "out_ab") & new
    removed = _removed(root / "out_b")
    assert set(removed) | _kept(root / "out_b") == new  # indexed documents are never written
    matches = {r["match"] for r in removed.values()}
    assert matches >= {"index", "near"}  # duplicates of A, and B's own as before
    assert _linked_at_threshold(removed, corpus["text"]) == []
    # every cluster_id of an index match is a document A kept
    assert {r["cluster_id"] for r in removed.values() if r["match"] == "index"} <= _kept(root / "out_a")
    stats = b.stats
    assert stats["index_duplicates"] == sum(r["match"] == "index" for r in removed.values()) > 0
    assert stats["index"]["runs"][0]["matched"] >= stats["index_duplicates"]
    assert stats["exact_verification"]["checked"] > 0


def test_the_split_holds_cross_batch_pairs_around_the_threshold(corpus):
    """The corpus exercises what the oracle is about: A–B pairs on both sides of the threshold."""
    members = {}
    for doc, fam in corpus["family"].items():
        members.setdefault(fam, []).append(doc)
    near_threshold = 0
    for docs in members.values():
        for a in (d for d in docs if corpus["batch"][d] == 2):
            for b in (d for d in docs if corpus["batch"][d] == 1):
                j = jaccard(word_shingles(corpus["text"][a], 5), word_shingles(corpus["text"][b], 5))
                near_threshold += 0.6 <= j <= 0.8
    assert near_threshold >= 10


def test_a_new_document_near_or_equal_to_a_removed_indexed_one_is_caught(corpus, two_batches):
    root = corpus["root"]
    x, x_plus, y, z, marks, marks_b = (p[0] for p in _planted())
    assert x in _kept(root / "out_a") and _removed(root / "out_a")[x_plus]["cluster_id"] == x
    removed = _removed(root / "out_b")
    # Y: near X' only (X' is removed in A), through the uncertain pair's exact Jaccard
    assert (removed[y]["match"], removed[y]["cluster_id"], removed[y]["linked_to"]) == ("index", x, x_plus)
    assert removed[y]["similarity"] == pytest.approx(96 / 126)
    # Z: an exact copy of X'; the shingle-less text: caught by its exact hash
    assert (removed[z]["match"], removed[z]["cluster_id"], removed[z]["linked_to"]) == ("index", x, x_plus)
    assert (removed[marks_b]["match"], removed[marks_b]["cluster_id"]) == ("index", marks)
    # X' crawled again: the document the index holds, not a second one under its id
    assert (removed[x_plus]["match"], removed[x_plus]["cluster_id"]) == ("index", x)


def test_the_index_holds_every_document_with_its_survivor(corpus, two_batches):
    root = corpus["root"]
    manifest = json.loads((root / "idx_a" / "index.json").read_text())
    assert manifest["format"] == 1 and len(manifest["runs"]) == 1
    assert manifest["settings"] == {"num_perm": 256, "seed": 42, "ngram": 5, "char_ngrams": False, "bands": 39,
                                    "rows": 6, "signature_version": 1}
    run = manifest["runs"][0]
    docs = pq.read_table(str(root / "idx_a" / run["segment"] / "docs")).to_pylist()
    removed = _removed(root / "out_a")
    assert len(docs) == run["documents"] == len(_kept(root / "out_a")) + len(removed)
    survivor = {d["doc_id"]: d["survivor"] for d in docs}
    assert all(survivor[doc] == row["cluster_id"] for doc, row in removed.items())
    assert all(survivor[doc] == doc for doc in _kept(root / "out_a"))
    # band keys and signatures for one document per exact-copy group; texts for removed ones only
    exact_copies = {doc for doc, row in removed.items() if row["match"] == "exact"}
    assert all(d["band_keys"] is None for d in docs if d["doc_id"] in exact_copies)
    texts = pq.read_table(str(root / "idx_a" / run["segment"] / "texts")).to_pylist()
    assert {t["doc_id"] for t in texts} == {doc for doc, row in removed.items() if row["match"] == "near"}
    combined = json.loads((root / "idx_ab" / "index.json").read_text())
    assert [r["id"] for r in combined["runs"]][0] == run["id"] and len(combined["runs"]) == 2
    ids = [d for r in combined["runs"] for d in
           pq.read_table(str(root / "idx_ab" / r["segment"] / "docs")).column("doc_id").to_pylist()]
    assert len(ids) == len(set(ids)) == combined["documents"]  # X', crawled again, is indexed once
    assert (root / "idx_ab" / "_SUCCESS").exists()


def test_mismatched_settings_and_foreign_indexes_are_refused_in_one_line(corpus, two_batches, tmp_path, capsys):
    root, paths = corpus["root"], corpus["paths"]
    base = ["--input", paths[0], "--output", str(tmp_path / "out"), "--id-column", "id"]
    (tmp_path / "empty").mkdir()
    other = tmp_path / "idx_other"
    shutil.copytree(root / "idx_b", other)
    manifest = json.loads((other / "index.json").read_text())
    cases = [
        (["--against", str(root / "idx_a"), "--num-perm", "128"], "num_perm=256"),
        (["--against", str(root / "idx_a"), "--char-ngrams"], "char_ngrams=False"),
        (["--against", str(root / "idx_a"), "--bands", "32", "--rows", "8"], "bands=39, rows=6"),
        (["--against", f"{root / 'idx_a'},{other}"], "seed=7"),
        (["--against", f"{root / 'idx_a'},{other}"], "format 3"),
        (["--against", str(tmp_path / "empty")], "not a published index"),
        (["--update-index", str(tmp_path / "idx")], "--update-index needs --against"),
        (["--save-index", str(root / "idx_a")], "already exists"),
        (["--against", str(root / "idx_a"), "--update-index", str(root / "idx_b")], "already exists"),
    ]
    for args, expected in cases:
        if expected == "seed=7":
            (other / "index.json").write_text(json.dumps({**manifest, "settings": {**manifest["settings"], "seed": 7}}))
        if expected == "format 3":
            (other / "index.json").write_text(json.dumps({**manifest, "format": 3}))
        assert dedup_main(base + args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, (args, err)
    assert not (tmp_path / "out").exists()


def test_an_id_reused_for_another_text_is_refused(spark, corpus, two_batches, tmp_path):
    table = pq.read_table(corpus["paths"][0])
    taken = next(d for d, k in corpus["batch"].items() if k == 2)
    clash = pa.table({"id": [taken], "content": ["a text the index has never seen under this id"],
                      "batch": pa.array([0], pa.int32())})
    pq.write_table(pa.concat_tables([table, clash]), tmp_path / "c.parquet")
    with pytest.raises(InputError, match="reuse ids of indexed documents"):
        _run(spark, tmp_path / "c.parquet", tmp_path / "out", against=[corpus["root"] / "idx_a"])


def test_uncertain_pairs_without_their_indexed_texts_stop_the_run(spark, corpus, two_batches, tmp_path):
    """Y's only match is the removed X', whose text is in the index: without it the pair would
    silently be no edge, so the run stops instead; so it does when an indexed run's data/ is gone."""
    moved = tmp_path / "moved"
    shutil.copytree(corpus["root"] / "idx_a", moved)
    manifest = json.loads((moved / "index.json").read_text())
    manifest["runs"][0]["data"] = str(tmp_path / "nowhere")
    (moved / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="is gone"):
        _run(spark, corpus["paths"][1], tmp_path / "out", against=[moved])
    broken = tmp_path / "idx"
    shutil.copytree(corpus["root"] / "idx_a", broken)
    for texts in broken.glob("runs/*/texts"):
        shutil.rmtree(texts)
        texts.mkdir()
    with pytest.raises(InputError, match="uncertain pairs need texts of indexed documents"):
        _run(spark, corpus["paths"][1], tmp_path / "out", against=[broken])


@pytest.fixture(scope="module")
def three_batches(spark, corpus, two_batches):
    root, paths = corpus["root"], corpus["paths"]
    combined = _run(spark, paths[0], root / "out_c", against=[root / "idx_ab"])
    separate = _run(spark, paths[0], root / "out_c2", against=[root / "idx_a", root / "idx_b"])
    joint = _run(spark, str(root / "all.parquet"), root / "out_abc")
    return combined, separate, joint


@pytest.mark.slow
def test_a_third_batch_against_the_updated_index_keeps_what_one_run_over_all_keeps(corpus, three_batches):
    root = corpus["root"]
    new = {d for d, k in corpus["batch"].items() if k == 0}
    assert _kept(root / "out_c") == _kept(root / "out_abc") & new
    # the combined index and the two separate ones are the same index
    assert _kept(root / "out_c2") == _kept(root / "out_c") and _removed(root / "out_c2") == _removed(root / "out_c")
    matched = {r["output"].rsplit("/", 1)[1]: r["matched"] for r in three_batches[0].stats["index"]["runs"]}
    assert matched["out_a"] > 0 and matched["out_b"] > 0  # from which earlier run
    assert _linked_at_threshold(_removed(root / "out_c"), corpus["text"]) == []


@pytest.mark.slow
def test_a_real_corpus_split_into_releases_keeps_what_one_run_keeps(spark, tmp_path):
    """The bundled source files as release 1, and a release 2 of edited versions of half of them
    (lines dropped, changed, added: real text at every similarity) plus new files."""
    rows = pq.read_table(SAMPLE).to_pylist()
    rng = np.random.default_rng(8)
    first, second = rows[:60], rows[60:]
    texts = [r["content"] for r in first]
    batches = [2] * len(first)
    for r in first[::2]:
        lines = r["content"].splitlines()
        keep = rng.random(len(lines)) > rng.uniform(0.02, 0.3)
        edited = [line + " # changed" if rng.random() < 0.05 else line for line, k in zip(lines, keep) if k]
        texts.append("\n".join(edited + ["# release 2"]))
        batches.append(1)
    texts += [r["content"] for r in second]
    batches += [1] * len(second)
    paths = _write_batches(tmp_path, list(range(len(texts))), texts, batches)
    _run(spark, paths[2], tmp_path / "out_a", save=tmp_path / "idx")
    b = _run(spark, paths[1], tmp_path / "out_b", against=[tmp_path / "idx"])
    _run(spark, str(tmp_path / "all.parquet"), tmp_path / "out_ab")
    new = {i for i, k in enumerate(batches) if k == 1}
    assert _kept(tmp_path / "out_b") == _kept(tmp_path / "out_ab") & new
    assert b.stats["index_duplicates"] > 0
    assert _linked_at_threshold(_removed(tmp_path / "out_b"), dict(enumerate(texts))) == []


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CORPUS_PREP_REAL_CORPUS"),
                    reason="CORPUS_PREP_REAL_CORPUS names no benchmarks/real_corpus.py file (nothing is downloaded)")
def test_new_releases_against_an_index_of_old_ones_keep_what_one_run_keeps(spark, tmp_path):
    """A corpus of ``benchmarks/real_corpus.py``, four packages: their newest three releases against an
    index of the older ones (the full corpus: ``benchmarks/incremental_cost.py``, BENCHMARKS.md)."""
    table = split_by_release(os.environ["CORPUS_PREP_REAL_CORPUS"], 3,
                             ["requests", "attrs", "itsdangerous", "MarkupSafe"])
    paths = _write_batches(tmp_path, table["id"].to_pylist(), table["content"].to_pylist(),
                           table["batch"].to_pylist())
    _run(spark, paths[1], tmp_path / "out_old", save=tmp_path / "idx")
    b = _run(spark, paths[0], tmp_path / "out_new", against=[tmp_path / "idx"])
    _run(spark, str(tmp_path / "all.parquet"), tmp_path / "out_both")
    new = {i for i, k in zip(table["id"].to_pylist(), table["batch"].to_pylist()) if k == 0}
    assert _kept(tmp_path / "out_new") == _kept(tmp_path / "out_both") & new
    assert b.stats["index_duplicates"] > 0


def test_prepare_chains_runs_through_one_index_and_reports_the_matches(spark, tmp_path):
    """Month 1 saves the index; month 2 updates it in place. A retry is skipped, and a forced
    rerun of month 2 replaces its own part of the index instead of matching against it."""
    rng = np.random.default_rng(2)
    words = [f"t{k}" for k in range(3000)]
    month1 = [" ".join(rng.choice(words, 80)) for _ in range(30)]
    month2 = [month1[k] + " and one more line" for k in range(8)] + [" ".join(rng.choice(words, 80)) for _ in range(20)]
    ids = list(range(len(month1) + len(month2)))
    batches = [2] * len(month1) + [1] * len(month2)
    paths = _write_batches(tmp_path, ids, month1 + month2, batches)
    index = str(tmp_path / "index")

    def prepare(batch, run, *args):
        argv = ["--input", paths[batch], "--output", str(tmp_path / run), "--id-column", "id", "--stages",
                "dedup,report", "--train-tokenizer", *args]
        return run_prepare(prepare_config(prepare_parser().parse_args(argv)), spark)

    prepare(2, "m1", "--save-index", index)
    second = prepare(1, "m2", "--against", index, "--update-index", index)
    assert second.stats["index_duplicates"] == 8
    assert [r["matched"] for r in second.stats["index"]["runs"]] == [8]
    page = (tmp_path / "m2" / "report.html").read_text()
    assert "Earlier runs (--against)" in page and str(tmp_path / "m1") in page
    retry = prepare(1, "m2", "--against", index, "--update-index", index)
    assert {o.stage: o.status for o in retry.outcomes}["dedup"] == "skipped"
    forced = prepare(1, "m2", "--against", index, "--update-index", index, "--force")
    assert forced.stats["index_duplicates"] == 8
    runs = json.loads((tmp_path / "index" / "index.json").read_text())["runs"]
    assert [r["output"].split("/")[-2] for r in runs] == ["m1", "m2"] and len(forced.stats["index"]["runs"]) == 1
