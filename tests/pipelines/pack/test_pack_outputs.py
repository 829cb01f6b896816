"""Outputs other trainers read directly: seqio and MaxText feature names, Megatron indexed datasets, provenance.

Each trainer's side is taken from its own documentation or code, not from this project:
seqio/T5X and MaxText parse TFRecords with ``tf.io.parse_single_example`` and a spec of
``FixedLenFeature([seq_len], tf.int64)`` per feature (``parse_with_spec`` below applies those
semantics to the project's protobuf decoder, and TensorFlow itself runs when installed);
Megatron-LM reads ``.bin``/``.idx`` with megatron-core's own ``IndexedDataset``.
"""

from __future__ import annotations

import collections
import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import InputConfig, PackConfig, TokenizerConfig
from pipelines.pack.pipeline import run_pack
from pipelines.pack.verify import verify_shards
from schemas.packed import load_manifest
from tests.conftest import optional_import, tfrecord_records, train_local_tokenizer
from tests.pipelines.pack.test_pack_job import make_texts
from udfs.tfrecord import decode_example

SEQ_LEN = 64
# What each trainer parses, per its documentation: every feature int64, seq_len long.
SPECS = {
    "default": ("input_ids", "segment_ids", "positions"),
    "seqio": ("targets", "targets_segment_ids", "targets_positions"),
    "maxtext": ("inputs", "inputs_segmentation", "inputs_position", "targets", "targets_segmentation",
                "targets_position"),
}


def parse_with_spec(record: bytes, fixed_len: tuple[str, ...], length: int) -> dict[str, np.ndarray]:
    """``tf.io.parse_single_example`` with ``{name: FixedLenFeature([length], tf.int64)}``: every named feature
    must be present as an int64 list of exactly ``length`` values; features outside the spec are ignored."""
    example = decode_example(record)
    out = {}
    for name in fixed_len:
        if name not in example:
            raise ValueError(f"feature {name!r} missing")
        values = example[name]
        if values.dtype != np.int64 or values.shape != (length,):
            raise ValueError(f"feature {name!r} has {values.dtype} {values.shape}, spec says int64 ({length},)")
        out[name] = values
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs_corpus")
    texts = make_texts(3, 300) + [None, ""]
    groups = [("code" if i % 3 == 0 else "prose") for i in range(len(texts))]
    table = pa.table({"id": list(range(len(texts))), "content": texts, "group": groups})
    data = root / "in"
    data.mkdir()
    pq.write_table(table.slice(0, 120), data / "a.parquet")
    pq.write_table(table.slice(120), data / "b.parquet")
    tok = train_local_tokenizer([t for t in texts if t], str(root / "tokenizer.json"))
    return {"dir": str(data), "texts": texts, "groups": groups, "tokenizer": tok,
            "tokenizer_path": str(root / "tokenizer.json")}


def _pack(spark, corpus, out, **kw) -> dict:
    cfg = PackConfig(input=InputConfig(path=corpus["dir"]), output=str(out), seq_len=SEQ_LEN, num_shards=3,
                     tokenizer=TokenizerConfig(path=corpus["tokenizer_path"], bos_token="<|bos|>"), **kw)
    run_pack(cfg, spark=spark)
    return load_manifest(str(out))


@pytest.fixture(scope="module")
def outputs(spark, corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    return {
        "default": (root / "default", _pack(spark, corpus, root / "default",
                                            formats=("parquet", "tfrecord", "megatron"), source_column="group")),
        "seqio": (root / "seqio", _pack(spark, corpus, root / "seqio", feature_names="seqio")),
        "maxtext": (root / "maxtext", _pack(spark, corpus, root / "maxtext", feature_names="maxtext")),
    }


def _streams(corpus, manifest) -> list[list[int]]:
    docs = [t for t in corpus["texts"] if t]
    return [[manifest["bos_id"], *e.ids, manifest["eos_id"]]
            for e in corpus["tokenizer"].encode_batch(docs, add_special_tokens=False)]


def _tfrecord_rows(out, manifest, names) -> list[dict[str, np.ndarray]]:
    return [parse_with_spec(r, names, SEQ_LEN) for e in manifest["shards"]["tfrecord"]
            for r in tfrecord_records(f"{out}/{e['file']}")]


def _next_tokens(ids: np.ndarray, seg: np.ndarray, pad: int) -> tuple[list, list]:
    """Next-token targets as MaxText's shift-then-pack makes them: within a segment only."""
    targets, segments = [], []
    for i in range(len(ids)):
        same = i + 1 < len(ids) and seg[i] != 0 and seg[i + 1] == seg[i]
        targets.append(int(ids[i + 1]) if same else pad)
        segments.append(int(seg[i]) if same else 0)
    return targets, segments


@pytest.mark.parametrize("scheme", ["seqio", "maxtext"])
def test_trainer_specs_decode_the_same_rows(outputs, scheme):
    base_dir, base = outputs["default"]
    out, manifest = outputs[scheme]
    names = SPECS[scheme]
    assert manifest["features"]["scheme"] == scheme
    assert sorted(manifest["features"]["columns"]) == sorted(names) and manifest["features"]["doc_ids"] == "doc_ids"
    assert manifest["features"]["columns"][names[0]] == "input_ids"  # column -> the field it carries
    rows = _tfrecord_rows(out, manifest, names)
    default_rows = _tfrecord_rows(base_dir, base, SPECS["default"])
    assert len(rows) == len(default_rows) == manifest["totals"]["rows"] == base["totals"]["rows"]
    first = dict(zip(("input_ids", "segment_ids", "positions"), names[:3]))
    for row, plain in zip(rows, default_rows):  # same corpus, seed and shards: the same rows, renamed
        for field, column in first.items():
            assert np.array_equal(row[column], plain[field])
        if scheme == "maxtext":
            targets, segments = _next_tokens(plain["input_ids"], plain["segment_ids"], manifest["pad_id"])
            assert row["targets"].tolist() == targets and row["targets_segmentation"].tolist() == segments
            assert np.array_equal(row["targets_position"], plain["positions"])
    # Parquet: the same names and values, tokens in the token dtype, the rest uint16
    for pq_entry, tf_entry in zip(manifest["shards"]["parquet"], manifest["shards"]["tfrecord"]):
        table = pq.read_table(f"{out}/{pq_entry['file']}")
        assert table.column_names == [*names, "doc_ids"]
        for name in names:
            assert str(table.schema.field(name).type) == "list<element: uint16>"
        records = [decode_example(r) for r in tfrecord_records(f"{out}/{tf_entry['file']}")]
        for name in (*names, "doc_ids"):
            assert table.column(name).to_pylist() == [r[name].tolist() for r in records]
    verify_shards(str(out))


@pytest.mark.parametrize("scheme", ["seqio", "maxtext"])
def test_runtime_loader_reads_renamed_features(outputs, scheme):
    optional_import("torch")
    from runtime.data.shards import PackedManifest, read_shard

    base = PackedManifest.load(str(outputs["default"][0]))
    renamed = PackedManifest.load(str(outputs[scheme][0]))
    for fmt in ("parquet", "tfrecord"):
        for a, b in zip(base.shard_list(fmt), renamed.shard_list(fmt)):
            plain, other = read_shard(a, fmt, SEQ_LEN, True), read_shard(b, fmt, SEQ_LEN, True)
            assert all(np.array_equal(plain[k], other[k]) for k in plain)


@pytest.mark.parametrize("scheme", ["seqio", "maxtext"])
def test_tensorflow_parses_with_the_trainer_spec(outputs, scheme):
    tf = pytest.importorskip("tensorflow")
    out, manifest = outputs[scheme]
    spec = {n: tf.io.FixedLenFeature([SEQ_LEN], tf.int64) for n in SPECS[scheme]}
    files = [f"{out}/{e['file']}" for e in manifest["shards"]["tfrecord"]]
    parsed = list(tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, spec)).as_numpy_iterator())
    assert len(parsed) == manifest["totals"]["rows"]


def test_megatron_core_reads_every_document(outputs, corpus):
    indexed = optional_import("megatron.core.datasets.indexed_dataset")
    out, manifest = outputs["default"]
    meg = manifest["megatron"]
    assert meg["data_path"] == [f"megatron/part-{k:05d}" for k in range(3)]
    assert (meg["dtype"], meg["dtype_code"], meg["eod_id"]) == ("uint16", 8, manifest["eos_id"])
    found = []
    for entry, pq_entry in zip(meg["files"], manifest["shards"]["parquet"]):
        dataset = indexed.IndexedDataset(f"{out}/{entry['prefix']}")
        assert len(dataset) == entry["documents"] == pq_entry["documents"]
        assert dataset.index.dtype == np.uint16
        assert dataset.document_indices.tolist() == list(range(entry["documents"] + 1))  # one sequence each
        documents = [dataset[i].tolist() for i in range(len(dataset))]
        assert sum(map(len, documents)) == entry["tokens"] == int(dataset.sequence_lengths.sum())
        assert all(d[-1] == manifest["eos_id"] and d[0] == manifest["bos_id"] for d in documents)
        # the Megatron shard holds exactly the documents packed into the Parquet shard of the same index
        table = pq.read_table(f"{out}/{pq_entry['file']}")
        ids, seg = (np.array(table.column(c).to_pylist()) for c in ("input_ids", "segment_ids"))
        packed = collections.Counter(tuple(ids[r][seg[r] == k]) for r in range(len(ids)) for k in range(1, seg[r].max() + 1))
        pieces = collections.Counter(tuple(d[i:i + SEQ_LEN]) for d in documents for i in range(0, len(d), SEQ_LEN))
        assert packed == pieces
        found += documents
    assert sorted(map(tuple, found)) == sorted(map(tuple, _streams(corpus, manifest)))
    assert meg["documents"] == len(found) == manifest["totals"]["documents"]
    verify_shards(str(out))


def test_megatron_alone_writes_no_packed_rows(spark, corpus, tmp_path):
    optional_import("megatron.core.datasets.indexed_dataset")
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    manifest = _pack(spark, corpus, tmp_path / "m", formats=("megatron",))
    assert manifest["shards"] == {} and not (tmp_path / "m" / "parquet").exists()
    datasets = [IndexedDataset(str(tmp_path / "m" / e["prefix"])) for e in manifest["megatron"]["files"]]
    documents = [d.tolist() for dataset in datasets for d in dataset[:len(dataset)]]  # views of its mmap
    assert sorted(map(tuple, documents)) == sorted(map(tuple, _streams(corpus, manifest)))
    assert verify_shards(str(tmp_path / "m"))["files"] == 6


def test_rows_lead_back_to_their_documents_and_sources(spark, outputs, corpus):
    """doc_ids of every row -> the documents table -> the input row (id, text, file)."""
    from pyspark.sql import functions as F

    out, manifest = outputs["seqio"]
    ids = spark.read.parquet(corpus["dir"]).select(F.xxhash64("id", "content", "group").alias("doc_id"),
                                                   "id", F.input_file_name().alias("file"))
    by_doc = {r["doc_id"]: (r["id"], r["file"]) for r in ids.collect()}  # the row hash dedup would use
    tok = corpus["tokenizer"]
    documents = pq.read_table(f"{out}/documents").to_pylist()
    table = {d["doc_id"]: d for d in documents}
    assert len(table) == len(documents) == len(corpus["texts"])
    for row in pq.read_table(f"{out}/parquet").to_pylist():
        seg = np.array(row["targets_segment_ids"])
        assert len(row["doc_ids"]) == seg.max()
        for k, doc_id in enumerate(row["doc_ids"], start=1):
            index, file = by_doc[doc_id]
            stream = [manifest["bos_id"], *tok.encode(corpus["texts"][index], add_special_tokens=False).ids,
                      manifest["eos_id"]]
            piece = np.array(row["targets"])[seg == k].tolist()
            assert any(stream[o:o + len(piece)] == piece for o in range(0, len(stream), SEQ_LEN))
            assert table[doc_id]["source"] == file and table[doc_id]["tokens"] == len(stream)
    # per-source token counts: the input files here
    by_source = manifest["source"]["by_source"]
    assert sorted(os.path.basename(s) for s in by_source) == ["a.parquet", "b.parquet"]
    assert sum(s["tokens"] for s in by_source.values()) == manifest["totals"]["tokens"]
    for source, counts in by_source.items():
        mine = [d for d in documents if d["source"] == source and d["status"] == 0]
        assert counts["documents"] == len(mine) and counts["tokens"] == sum(d["tokens"] for d in mine)


def test_source_column_counts(outputs, corpus):
    _, manifest = outputs["default"]
    by_source = manifest["source"]["by_source"]
    assert manifest["source"]["source_column"] == "group" and sorted(by_source) == ["code", "prose"]
    streams = _streams(corpus, manifest)
    kept = [g for t, g in zip(corpus["texts"], corpus["groups"]) if t]
    for group in ("code", "prose"):
        expected = [s for s, g in zip(streams, kept) if g == group]
        assert by_source[group]["documents"] == len(expected)
        assert by_source[group]["tokens"] == sum(map(len, expected))
    assert (manifest["source"]["sources"], manifest["source"]["listed"]) == (2, 2)
    assert glob.glob(f"{outputs['default'][0]}/documents/*.parquet")
