"""The pack job end to end on real Spark: round trip against the tokenizer, readers, manifest, determinism."""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from pipelines.config import InputConfig, PackConfig, TokenizerConfig
from pipelines.io.publish import OutputExists
from pipelines.io.readers import InputError
from pipelines.pack.pipeline import run_pack
from pipelines.pack.verify import verify_shards
from schemas.packed import load_manifest
from udfs.packing import unpack_segments
from tests.conftest import tfrecord_records, train_local_tokenizer
from udfs.tfrecord import CorruptShardError, decode_example

SEQ_LEN = 64
WORDS = ("the of and to in is was for on that with as by at from it an be this which or "
         "données naïve café 東京 データ 🙂 x=1; def f(): return {k: v} /* */ <div>").split()


def make_texts(seed: int, n: int) -> list[str]:
    """Documents of heavy-tailed length (a few span several rows) from a mixed-script vocabulary."""
    rng = np.random.default_rng(seed)
    texts = []
    for k in range(n):
        words = max(1, int(rng.pareto(1.3) * 12))
        words = min(words, 600)
        picked = rng.integers(0, len(WORDS), words)
        sep = "\n" if k % 7 == 0 else " "
        texts.append(sep.join(WORDS[i] for i in picked))
    return texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack_corpus")
    texts = make_texts(0, 600)
    texts += [texts[5], None, ""]  # a duplicate, a null and an empty text
    ids = list(range(len(texts)))
    table = pa.table({"id": ids, "content": texts})
    a = root / "a"
    a.mkdir()
    for k, part in enumerate((table.slice(0, 250), table.slice(250, 200), table.slice(450))):
        pq.write_table(part, a / f"part-{k}.parquet")
    b = root / "b"  # the same documents, other files and other order
    b.mkdir()
    rev = table.take(pa.array(list(reversed(ids))))
    pq.write_table(rev.slice(0, 100), b / "x.parquet")
    pq.write_table(rev.slice(100), b / "y.parquet")
    tok = train_local_tokenizer([t for t in texts if t], str(root / "tokenizer.json"))
    return {"root": root, "a": str(a), "b": str(b), "texts": texts, "tokenizer": tok,
            "tokenizer_path": str(root / "tokenizer.json")}


def _cfg(corpus, src: str, out: str, **kw) -> PackConfig:
    tok = TokenizerConfig(path=corpus["tokenizer_path"], bos_token="<|bos|>")
    kw.setdefault("tokenizer", tok)
    return PackConfig(input=InputConfig(path=src), output=out, seq_len=SEQ_LEN, num_shards=3, **kw)


@pytest.fixture(scope="module")
def packed(spark, corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pack_out") / "packed")
    result = run_pack(_cfg(corpus, corpus["a"], out), spark=spark)
    return result.output


def _parquet_rows(out: str) -> dict[str, np.ndarray]:
    tables = [pq.read_table(f) for f in sorted(glob.glob(f"{out}/parquet/part-*.parquet"))]
    table = pa.concat_tables(tables)
    return {n: np.array(table.column(n).to_pylist(), dtype=np.int64).reshape(-1, SEQ_LEN)
            for n in ("input_ids", "segment_ids", "positions")}


def _expected_pieces(corpus, bos: int | None, eos: int) -> collections.Counter:
    docs = [t for t in corpus["texts"] if t]
    streams = [([bos] if bos is not None else []) + e.ids + [eos]
               for e in corpus["tokenizer"].encode_batch(docs, add_special_tokens=False)]
    return collections.Counter(tuple(s[i:i + SEQ_LEN]) for s in streams for i in range(0, len(s), SEQ_LEN))


def test_round_trip_every_token_once_in_order(packed, corpus):
    manifest = load_manifest(packed)
    rows = _parquet_rows(packed)
    segments = collections.Counter(tuple(s.tolist()) for s in unpack_segments(rows["input_ids"], rows["segment_ids"]))
    expected = _expected_pieces(corpus, manifest["bos_id"], manifest["eos_id"])
    assert segments == expected
    assert sum(len(p) * c for p, c in expected.items()) == manifest["totals"]["tokens"]


def test_bos_and_eos_placement(packed, corpus):
    manifest = load_manifest(packed)
    tok = corpus["tokenizer"]
    assert manifest["eos_id"] == tok.token_to_id("<|endoftext|>")
    assert manifest["bos_id"] == tok.token_to_id("<|bos|>")
    assert manifest["pad_id"] == tok.token_to_id("<|pad|>")
    assert manifest["mask_id"] is manifest["cls_id"] is manifest["sep_id"] is None  # not an encoder tokenizer
    rows = _parquet_rows(packed)
    segments = unpack_segments(rows["input_ids"], rows["segment_ids"])
    n_docs = manifest["stats"]["documents"]
    ids = rows["input_ids"][rows["segment_ids"] > 0]
    assert int((ids == manifest["eos_id"]).sum()) == n_docs == 601  # 600 generated + the duplicate
    assert int((ids == manifest["bos_id"]).sum()) == n_docs
    starts = sum(1 for s in segments if s[0] == manifest["bos_id"])
    ends = sum(1 for s in segments if s[-1] == manifest["eos_id"])
    assert starts == ends == n_docs
    # a document's first piece starts with BOS, its last piece ends with EOS, a middle piece has neither
    assert all(s[0] == manifest["bos_id"] or s[-1] == manifest["eos_id"] or len(s) == SEQ_LEN
               for s in segments)
    text = tok.decode([t for t in segments[0].tolist()], skip_special_tokens=True)
    assert text and isinstance(text, str)


def test_manifest_and_stats(packed, corpus):
    manifest = load_manifest(packed)
    stats = manifest["stats"]
    assert stats["null_text"] == 1 and stats["empty_text"] == 1
    assert stats["input_documents"] == len(corpus["texts"])
    assert stats["tokens_dropped"] == 0
    assert stats["documents_split"] > 0
    assert stats["fraction_split"] == pytest.approx(stats["documents_split"] / stats["documents"])
    totals = manifest["totals"]
    assert stats["fill_rate"] == pytest.approx(totals["tokens"] / (totals["rows"] * SEQ_LEN))
    assert [e["file"] for e in manifest["shards"]["parquet"]] == [
        "parquet/part-00000.parquet", "parquet/part-00001.parquet", "parquet/part-00002.parquet"]
    assert sorted(os.listdir(f"{packed}/tfrecord")) == ["part-00000.tfrecord", "part-00001.tfrecord",
                                                        "part-00002.tfrecord"]
    with open(f"{packed}/tokenizer.json", "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == manifest["tokenizer_sha256"]
    assert manifest["token_dtype"] == "uint16" and manifest["packing"] == "best-fit"
    assert manifest["dedup_stats"] is None
    assert os.path.exists(f"{packed}/_SUCCESS") and not os.path.exists(f"{packed}/_work")
    assert not [n for n in os.listdir(os.path.dirname(packed)) if "staging" in n]


def test_readers_agree_parquet_tfrecord_datasets(packed):
    import datasets

    manifest = load_manifest(packed)
    for pq_entry, tf_entry in zip(manifest["shards"]["parquet"], manifest["shards"]["tfrecord"]):
        table = pq.read_table(f"{packed}/{pq_entry['file']}")
        records = [decode_example(r) for r in tfrecord_records(f"{packed}/{tf_entry['file']}")]
        assert table.num_rows == len(records) == pq_entry["rows"] == tf_entry["rows"]
        for name in ("input_ids", "segment_ids", "positions"):
            assert table.column(name).to_pylist() == [r[name].tolist() for r in records]
    ds = datasets.load_dataset("parquet", data_files=sorted(glob.glob(f"{packed}/parquet/*.parquet")),
                               split="train", cache_dir=os.path.join(os.path.dirname(packed), "hf_cache"))
    assert len(ds) == manifest["totals"]["rows"]
    assert str(ds.features["input_ids"].feature.dtype) == "uint16"
    assert ds[0]["input_ids"] == pq.read_table(f"{packed}/parquet/part-00000.parquet").column(
        "input_ids")[0].as_py()
    assert verify_shards(packed)["files"] == 6


@pytest.mark.parametrize("fmt,where", [("tfrecord", 0.5), ("parquet", 0.5), ("tfrecord", 0.999)])
def test_verifier_names_a_corrupt_file(packed, tmp_path, fmt, where):
    copy = str(tmp_path / "copy")
    shutil.copytree(packed, copy)
    victim = f"{copy}/{fmt}/part-00001.{fmt}"
    raw = bytearray(open(victim, "rb").read())
    raw[int(len(raw) * where)] ^= 0x01
    open(victim, "wb").write(bytes(raw))
    with pytest.raises(CorruptShardError) as err:
        verify_shards(copy)
    assert err.value.path.endswith(f"{fmt}/part-00001.{fmt}")
    assert f"part-00001.{fmt}" in str(err.value)


def test_verifier_names_a_truncated_file(packed, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(packed, copy)
    victim = f"{copy}/tfrecord/part-00002.tfrecord"
    raw = open(victim, "rb").read()
    open(victim, "wb").write(raw[:-7])
    with pytest.raises(CorruptShardError, match="part-00002.tfrecord") as err:
        verify_shards(copy)
    assert "truncated" in err.value.reason
    with pytest.raises(CorruptShardError, match="part-00002.tfrecord.*truncated"):
        tfrecord_records(victim)


def test_same_documents_in_other_files_and_order_give_identical_bytes(spark, corpus, packed, tmp_path):
    out = tmp_path / "again"
    out.mkdir()  # an existing output is replaced only with overwrite
    with pytest.raises(OutputExists):
        run_pack(_cfg(corpus, corpus["b"], str(out)), spark=spark)
    run_pack(_cfg(corpus, corpus["b"], str(out), overwrite=True), spark=spark)
    first, second = load_manifest(packed), load_manifest(str(out))
    assert first["shards"] == second["shards"]
    for name in ("tokenizer.json", *[e["file"] for e in first["shards"]["parquet"] + first["shards"]["tfrecord"]]):
        assert open(f"{packed}/{name}", "rb").read() == open(f"{out}/{name}", "rb").read(), name
    first.pop("source"), second.pop("source")
    assert first == second


def test_dedup_output_trained_tokenizer_greedy_and_cap(spark, corpus, tmp_path):
    dedup = tmp_path / "dedup"
    (dedup / "data").mkdir(parents=True)
    texts = [t for t in corpus["texts"] if t][:300]
    pq.write_table(pa.table({"doc_id": pa.array(range(len(texts)), pa.int64()), "text": texts}),
                   dedup / "data" / "part-0.parquet")
    (dedup / "stats.json").write_text(json.dumps({"documents": 400, "kept": 300, "near_duplicates": 100,
                                                  "input": "gs://corpus/raw/*.parquet"}))
    (dedup / "_SUCCESS").write_text("")
    cap = 40
    cfg = PackConfig(input=InputConfig(path=str(dedup)), output=str(tmp_path / "out"), seq_len=SEQ_LEN,
                     tokenizer=TokenizerConfig(train=True, vocab_size=320, min_frequency=1),
                     packing="greedy", formats=("parquet",), max_doc_tokens=cap, target_shard_bytes=16_000)
    result = run_pack(cfg, spark=spark)
    manifest = load_manifest(result.output)
    assert manifest["dedup_stats"]["kept"] == 300
    # provenance: rows name the dedup job's doc ids; the source is the corpus the dedup job read
    row_ids = {i for f in glob.glob(f"{result.output}/parquet/*.parquet")
               for ids in pq.read_table(f).column("doc_ids").to_pylist() for i in ids}
    assert row_ids == set(range(len(texts)))
    assert list(manifest["source"]["by_source"]) == ["gs://corpus/raw/*.parquet"]
    assert manifest["source"]["read"].endswith("/data") and manifest["source"]["text_column"] == "text"
    assert manifest["packing"] == "greedy" and list(manifest["shards"]) == ["parquet"]
    assert manifest["totals"]["shards"] > 1  # sized by the byte target
    assert not os.path.exists(f"{result.output}/tfrecord")
    tok = Tokenizer.from_file(f"{result.output}/tokenizer.json")
    assert tok.get_vocab_size() <= 320 and tok.token_to_id("<|endoftext|>") == manifest["eos_id"] == 1
    # the cap: content beyond cap - 1 tokens is dropped and counted; EOS kept
    content = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    expected_dropped = sum(max(0, len(c) - (cap - 1)) for c in content)
    assert expected_dropped > 0
    assert manifest["stats"]["tokens_dropped"] == expected_dropped
    rows = _parquet_rows(result.output)
    got = collections.Counter(tuple(s.tolist()) for s in unpack_segments(rows["input_ids"], rows["segment_ids"]))
    assert got == collections.Counter(tuple(c[:cap - 1]) + (1,) for c in content)  # cap < SEQ_LEN: one piece each
    verify_shards(result.output)


def test_missing_text_column_is_a_clear_error(spark, corpus, tmp_path):
    cfg = PackConfig(input=InputConfig(path=corpus["a"], text_column="body", fallback_text_column="nope"),
                     output=str(tmp_path / "o"), seq_len=SEQ_LEN,
                     tokenizer=TokenizerConfig(path=corpus["tokenizer_path"]))
    with pytest.raises(InputError, match="'body' not found.*content"):
        run_pack(cfg, spark=spark)
    assert not os.path.exists(tmp_path / "o")


def test_unknown_eos_token_is_a_clear_error(spark, corpus, tmp_path):
    from pipelines.pack.tokenizer import TokenizerError

    cfg = _cfg(corpus, corpus["a"], str(tmp_path / "o"),
               tokenizer=TokenizerConfig(path=corpus["tokenizer_path"], eos_token="</s>"))
    with pytest.raises(TokenizerError, match="'</s>' is not in"):
        run_pack(cfg, spark=spark)
    assert not os.path.exists(tmp_path / "o")
    assert not [n for n in os.listdir(tmp_path) if "staging" in n]


def test_job_cli_parses_into_config():
    from pipelines.pack.cli import pack_config, pack_parser

    args = pack_parser().parse_args(["--input", "in", "--output", "out", "--seq-len", "128", "--train-tokenizer",
                                     "--vocab-size", "1000", "--formats", "tfrecord", "--target-shard-bytes",
                                     "8M", "--packing", "greedy", "--no-shuffle-rows", "--bos-token", "<s>"])
    cfg = pack_config(args)
    assert (cfg.seq_len, cfg.tokenizer.train, cfg.tokenizer.vocab_size, cfg.formats) == (128, True, 1000, ("tfrecord",))
    assert cfg.target_shard_bytes == 8 * 2**20 and cfg.packing == "greedy" and cfg.shuffle_rows is False
    assert cfg.tokenizer.bos_token == "<s>" and cfg.num_shards is None
    with pytest.raises(ValueError, match="exactly one"):
        pack_config(pack_parser().parse_args(["--input", "in", "--output", "out"]))


def test_encoder_tokenizer_flags(corpus):
    """--mask-token makes an encoder tokenizer: framed by --bos-token/--eos-token, its own pad, the mask present."""
    from pipelines.pack.cli import pack_config, pack_parser
    from pipelines.pack.tokenizer import TokenizerError, load_tokenizer_file

    encoder = ["--input", "in", "--output", "out", "--train-tokenizer", "--tokenizer-model", "wordpiece",
               "--mask-token", "[MASK]", "--eos-token", "[SEP]", "--pad-token", "[PAD]"]
    cfg = pack_config(pack_parser().parse_args(encoder + ["--bos-token", "[CLS]"]))
    assert (cfg.tokenizer.model, cfg.tokenizer.mask_token, cfg.tokenizer.bos_token) == ("wordpiece", "[MASK]", "[CLS]")
    with pytest.raises(ValueError, match="--mask-token needs --bos-token"):
        pack_config(pack_parser().parse_args(encoder))
    with pytest.raises(SystemExit):
        pack_parser().parse_args(encoder + ["--tokenizer-model", "unigram"])
    given = TokenizerConfig(path=corpus["tokenizer_path"], bos_token="<|bos|>", mask_token="[MASK]")
    with pytest.raises(TokenizerError, match="mask token '\\[MASK\\]' is not in"):
        load_tokenizer_file(given)
    # the test tokenizer's <|bos|> plays [MASK]; without <|pad|> an encoder has no pad token of its own
    with pytest.raises(TokenizerError, match="needs its own pad token"):
        load_tokenizer_file(TokenizerConfig(path=corpus["tokenizer_path"], bos_token="<|endoftext|>",
                                            mask_token="<|bos|>", pad_token="[PAD]"))
    info = load_tokenizer_file(TokenizerConfig(path=corpus["tokenizer_path"], bos_token="<|endoftext|>",
                                               mask_token="<|bos|>"))
    assert info.mask_id == corpus["tokenizer"].token_to_id("<|bos|>")


def test_tensorflow_reads_the_tfrecord_shards(packed):
    """TensorFlow's own reader and parser accept the shards and see the Parquet rows."""
    tf = pytest.importorskip("tensorflow")
    manifest = load_manifest(packed)
    spec = {n: tf.io.FixedLenFeature([SEQ_LEN], tf.int64) for n in ("input_ids", "segment_ids", "positions")}
    for pq_entry, tf_entry in zip(manifest["shards"]["parquet"], manifest["shards"]["tfrecord"]):
        dataset = tf.data.TFRecordDataset(f"{packed}/{tf_entry['file']}").map(
            lambda record: tf.io.parse_single_example(record, spec))
        parsed = list(dataset.as_numpy_iterator())
        table = pq.read_table(f"{packed}/{pq_entry['file']}")
        assert len(parsed) == table.num_rows == tf_entry["rows"]
        for name in spec:
            assert [r[name].tolist() for r in parsed] == table.column(name).to_pylist()
