"""The packed-output manifest validator: a good manifest passes, each kind of breakage is named."""

from __future__ import annotations

import copy
import json

import pytest

from schemas.packed import FEATURE_NAMES, ManifestError, validate_manifest


def _manifest():
    shard = {"rows": 2, "tokens": 30, "padding_tokens": 2, "documents": 3, "sha256": "0" * 64, "bytes": 10}
    return {
        "format_version": 2, "seq_len": 16, "vocab_size": 500, "token_dtype": "uint16", "pad_id": 0,
        "eos_id": 1, "bos_id": None, "tokenizer": "tokenizer.json", "tokenizer_sha256": "a" * 64,
        "packing": "best-fit",
        "shards": {"parquet": [dict(shard, file="parquet/part-00000.parquet")],
                   "tfrecord": [dict(shard, file="tfrecord/part-00000.tfrecord")]},
        "totals": {"rows": 2, "tokens": 30, "padding_tokens": 2, "documents": 3, "shards": 1},
        "stats": {"fill_rate": 30 / 32, "documents": 3, "documents_split": 0, "fraction_split": 0.0,
                  "tokens_dropped": 0},
        "source": {"path": "x"}, "dedup_stats": None,
    }


def test_manifest_validator_accepts_a_good_manifest():
    validate_manifest(json.loads(json.dumps(_manifest())))


@pytest.mark.parametrize("breakage,needle", [
    (lambda m: m.pop("seq_len"), "missing 'seq_len'"),
    (lambda m: m.update(token_dtype="int32"), "token_dtype"),
    (lambda m: m["shards"]["parquet"][0].update(tokens=31), "tokens + padding_tokens"),
    (lambda m: m["shards"]["tfrecord"][0].update(file="tfrecord/part-1.tfrecord"), "file"),
    (lambda m: m["totals"].update(rows=3), "totals.rows"),
    (lambda m: m.update(eos_id=500), "eos_id"),
    (lambda m: m["stats"].update(fill_rate=1.5), "fill_rate"),
    (lambda m: m.update(packing="first-fit"), "packing"),
])
def test_manifest_validator_rejects(breakage, needle):
    manifest = copy.deepcopy(_manifest())
    breakage(manifest)
    with pytest.raises(ManifestError, match=needle.replace("+", r"\+")):
        validate_manifest(manifest)


def test_manifest_validator_checks_features_and_megatron():
    manifest = copy.deepcopy(_manifest())
    manifest["features"] = {"scheme": "seqio", "columns": FEATURE_NAMES["seqio"], "doc_ids": "doc_ids"}
    file = {"prefix": "megatron/part-00000", "file": "megatron/part-00000.bin", "idx_file": "megatron/part-00000.idx",
            "documents": 3, "tokens": 30, "sha256": "0" * 64, "bytes": 60, "idx_sha256": "0" * 64, "idx_bytes": 99}
    manifest["megatron"] = {"documents": 3, "tokens": 30, "files": [file]}
    validate_manifest(manifest)
    only_megatron = dict(copy.deepcopy(manifest), shards={})
    validate_manifest(only_megatron)
    for breakage, needle in [(lambda m: m["features"].update(scheme="t5x"), "features.scheme"),
                             (lambda m: m["features"]["columns"].update(targets="positions"), "do not match"),
                             (lambda m: m["megatron"]["files"][0].update(tokens=29), "megatron.tokens"),
                             (lambda m: m["megatron"]["files"][0].update(idx_file="x.idx"), "megatron.files")]:
        broken = copy.deepcopy(manifest)
        breakage(broken)
        with pytest.raises(ManifestError, match=needle):
            validate_manifest(broken)
