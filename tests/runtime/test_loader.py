"""The loader: exact-once per epoch across ranks x workers, exact resume, verified shards."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from runtime.config import LoaderConfig
from runtime.data import IGNORE_INDEX, PackedLoader, PackedManifest, read_shard
from udfs.tfrecord import CorruptShardError


@pytest.fixture(scope="module")
def shard_rows(packed_dir) -> list[int]:
    return [s.rows for s in PackedManifest.load(packed_dir).shard_list("parquet")]


@pytest.fixture(scope="module")
def total(shard_rows) -> int:
    return sum(shard_rows)


def _rows(loader) -> list[int]:
    return [int(r) for batch in loader for r in batch["row_ids"]]


@pytest.mark.parametrize("world_size,num_workers,batch_size,shuffle_shards",
                         [(1, 0, 8, 4), (2, 2, 5, 1), (3, 3, 4, 2), (4, 1, 7, 1)])
def test_every_row_exactly_once_per_epoch(packed_dir, total, world_size, num_workers, batch_size, shuffle_shards):
    cfg = LoaderConfig(batch_size=batch_size, num_workers=num_workers, shuffle_shards=shuffle_shards)
    seen = []
    for rank in range(world_size):
        seen += _rows(PackedLoader(packed_dir, cfg, rank=rank, world_size=world_size, epochs=2))
    counts = np.bincount(seen, minlength=total)
    assert counts.tolist() == [2] * total


def test_order_depends_on_seed_and_epoch_only(packed_dir, total):
    cfg = LoaderConfig(batch_size=total)
    epochs = list(PackedLoader(packed_dir, cfg, epochs=2))
    first, second = (b["row_ids"].tolist() for b in epochs)
    assert sorted(first) == sorted(second) == list(range(total))
    assert first != second  # reshuffled each epoch
    again = next(iter(PackedLoader(packed_dir, cfg, epochs=1)))["row_ids"].tolist()
    assert again == first
    other_seed = next(iter(PackedLoader(packed_dir, LoaderConfig(batch_size=total, shuffle_seed=1), epochs=1)))
    assert other_seed["row_ids"].tolist() != first
    unshuffled = next(iter(PackedLoader(packed_dir, LoaderConfig(batch_size=total, shuffle=False), epochs=1)))
    assert unshuffled["row_ids"].tolist() == list(range(total))


@pytest.mark.parametrize("workers_before,workers_after,world_before,world_after,steps",
                         [(0, 0, 1, 1, 3), (2, 0, 2, 2, 5), (0, 3, 2, 2, 7), (1, 2, 2, 3, 4)])
def test_resume_yields_exactly_the_remaining_rows(packed_dir, total, workers_before, workers_after,
                                                  world_before, world_after, steps):
    def cfg(workers):
        return LoaderConfig(batch_size=6, num_workers=workers, shuffle_shards=2)

    # Reference: the global stream order of an uninterrupted single-rank run.
    reference = _rows(PackedLoader(packed_dir, LoaderConfig(batch_size=1, shuffle_shards=2), epochs=2))
    states, consumed = [], []
    for rank in range(world_before):
        loader = PackedLoader(packed_dir, cfg(workers_before), rank=rank, world_size=world_before, epochs=2)
        it = iter(loader)
        consumed += [int(r) for _ in range(steps) for r in next(it)["row_ids"]]
        states.append(loader.state_dict())
    assert all(s == states[0] for s in states)
    assert states[0]["consumed"] == steps * 6 * world_before
    rest = []
    for rank in range(world_after):
        loader = PackedLoader(packed_dir, cfg(workers_after), rank=rank, world_size=world_after, epochs=2)
        loader.load_state_dict(states[0])
        rest += _rows(loader)
    cut = states[0]["consumed"]
    assert sorted(consumed) == sorted(reference[:cut])
    assert sorted(rest) == sorted(reference[cut:])
    assert len(rest) == 2 * total - cut


def test_single_rank_resume_is_the_same_sequence(packed_dir):
    cfg = LoaderConfig(batch_size=5, num_workers=2)
    straight = [b["row_ids"].tolist() for b in PackedLoader(packed_dir, cfg, epochs=3)]
    first = PackedLoader(packed_dir, cfg, epochs=3)
    it = iter(first)
    head = [next(it)["row_ids"].tolist() for _ in range(11)]
    second = PackedLoader(packed_dir, LoaderConfig(batch_size=5, num_workers=3), epochs=3)
    second.load_state_dict(first.state_dict())
    assert head + [b["row_ids"].tolist() for b in second] == straight
    assert second.epoch == 3


def test_batches_carry_positions_segments_and_document_labels(packed_dir, shard_rows, total):
    manifest = PackedManifest.load(packed_dir)
    batch = next(iter(PackedLoader(packed_dir, LoaderConfig(batch_size=total, shuffle=False), epochs=1)))
    shard0 = read_shard(manifest.shard_list("parquet")[0], "parquet", manifest.seq_len, verify=True)
    n0 = shard_rows[0]
    assert torch.equal(batch["input_ids"][:n0], torch.from_numpy(shard0["input_ids"].astype(np.int64)))
    seg, pos, labels, ids = batch["segment_ids"], batch["position_ids"], batch["labels"], batch["input_ids"]
    starts = torch.ones_like(seg, dtype=torch.bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    assert (pos[starts & (seg > 0)] == 0).all()  # positions restart with each document
    assert (labels[starts] == IGNORE_INDEX).all()  # no label across a document boundary
    assert (labels[seg == 0] == IGNORE_INDEX).all()
    keep = ~starts & (seg > 0)
    assert torch.equal(labels[keep], ids[keep])
    assert (seg == 0).any() and (seg.max(dim=1).values > 1).any()  # the corpus exercises both


def test_parquet_and_tfrecord_give_identical_batches(packed_dir):
    def batches(fmt):
        return list(PackedLoader(packed_dir, LoaderConfig(shard_format=fmt, batch_size=9), epochs=1))

    for a, b in zip(batches("parquet"), batches("tfrecord"), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_shard_is_refused(packed_dir, total, tmp_path):
    corrupt = str(tmp_path / "packed")
    shutil.copytree(packed_dir, corrupt)
    path = os.path.join(corrupt, "parquet", "part-00001.parquet")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    with pytest.raises(CorruptShardError, match="sha256"):
        list(PackedLoader(corrupt, LoaderConfig(batch_size=total, shuffle=False), epochs=1))
