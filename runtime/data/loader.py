"""Exactly resumable, rank- and worker-sharded stream of packed batches.

The design fixes one global order and derives everything from a single counter:

* For each epoch ``e`` the rows of all shards are put in a deterministic order from
  ``(shuffle_seed, e)``: the shards are permuted, cut into windows of ``shuffle_shards``
  shards, and the rows inside each window are permuted. Epochs are concatenated into one
  infinite stream of global positions ``q = e * N + p``.
* Rank ``r`` of ``R`` takes the positions ``start + r + l * R`` (``l = 0, 1, ...``); its
  local batch ``b`` (rows ``l`` in ``[b*B, (b+1)*B)``) is produced by DataLoader worker
  ``b % W``. PyTorch's DataLoader hands out worker outputs round-robin, so batches reach
  the training loop in order ``b = 0, 1, 2, ...`` whatever ``W`` is.
* The state is the number of global positions consumed. Every rank consumes the same
  number of rows per step, so ``start + steps * B * R`` is exact, and it does not depend on
  the worker count (nor on ``R``): a resumed loader starts from it and yields exactly the
  rows that were left.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from runtime.config import LoaderConfig
from runtime.data.shards import PackedManifest, read_shard

IGNORE_INDEX = -100  # the label value transformers' loss skips


class EpochOrder:
    """Global row ids (shard offset + row) of positions within an epoch."""

    def __init__(self, shard_rows: list[int], seed: int, shuffle: bool, shuffle_shards: int) -> None:
        self.shard_rows = np.asarray(shard_rows, dtype=np.int64)
        self.shard_offsets = np.concatenate([[0], np.cumsum(self.shard_rows)])
        self.total = int(self.shard_offsets[-1])
        self.seed, self.shuffle, self.window = seed, shuffle, shuffle_shards
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def _windows(self, epoch: int) -> list[np.ndarray]:
        shards = np.arange(len(self.shard_rows))
        if self.shuffle:
            shards = np.random.default_rng([self.seed, epoch]).permutation(shards)
        return [shards[i:i + self.window] for i in range(0, len(shards), self.window)]

    def _window_rows(self, epoch: int, index: int, shards: np.ndarray) -> np.ndarray:
        key = (epoch, index)
        if key not in self._cache:
            rows = np.concatenate([np.arange(self.shard_offsets[s], self.shard_offsets[s + 1])
                                   for s in shards])
            if self.shuffle:
                rows = np.random.default_rng([self.seed, epoch, index]).permutation(rows)
            self._cache[key] = rows
            if len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[key]

    def rows(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        windows = self._windows(epoch)
        sizes = [int(self.shard_rows[w].sum()) for w in windows]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        which = np.searchsorted(starts, positions, side="right") - 1
        out = np.empty(len(positions), dtype=np.int64)
        for index in np.unique(which):
            sel = which == index
            out[sel] = self._window_rows(epoch, int(index), windows[index])[positions[sel] - starts[index]]
        return out

    def locate(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard index, row within shard) of global row ids."""
        shard = np.searchsorted(self.shard_offsets, row_ids, side="right") - 1
        return shard, row_ids - self.shard_offsets[shard]


def next_token_labels(input_ids: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
    """Labels for transformers' shifted causal-LM loss: token t is predicted from t-1.

    -100 at padding and at the first token of every document, so the last token of one
    document is never trained to predict the first token of the next.
    """
    labels = input_ids.astype(np.int64)
    starts = np.ones_like(segment_ids, dtype=bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    labels[starts | (segment_ids == 0)] = IGNORE_INDEX
    return labels


class PackedRows(IterableDataset):
    """One rank's batches from global position ``start`` up to ``stop`` (None: forever)."""

    def __init__(self, manifest: PackedManifest, cfg: LoaderConfig, rank: int, world_size: int,
                 start: int, stop: int | None) -> None:
        self.manifest, self.cfg = manifest, cfg
        self.rank, self.world_size, self.start, self.stop = rank, world_size, start, stop
        self.shards = manifest.shard_list(cfg.shard_format)
        self.order = EpochOrder([s.rows for s in self.shards], cfg.shuffle_seed, cfg.shuffle,
                                cfg.shuffle_shards)
        if self.order.total == 0:
            raise ValueError(f"manifest {manifest.root!r} has no rows")
        self._decoded: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    def _shard(self, index: int) -> dict[str, np.ndarray]:
        if index in self._decoded:
            self._decoded.move_to_end(index)
        else:
            self._decoded[index] = read_shard(self.shards[index], self.cfg.shard_format,
                                              self.manifest.seq_len, self.cfg.verify_checksums)
            if len(self._decoded) > 2 * self.cfg.shuffle_shards:
                self._decoded.popitem(last=False)
        return self._decoded[index]

    def batch(self, local_batch: int) -> dict[str, torch.Tensor] | None:
        """Local batch ``local_batch`` counted from ``start``; None past ``stop``."""
        size = self.cfg.batch_size
        local = np.arange(local_batch * size, (local_batch + 1) * size, dtype=np.int64)
        positions = self.start + self.rank + local * self.world_size
        if self.stop is not None:
            positions = positions[positions < self.stop]
        if positions.size == 0:
            return None
        total = self.order.total
        epochs, within = positions // total, positions % total
        row_ids = np.empty_like(positions)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            row_ids[sel] = self.order.rows(int(epoch), within[sel])
        shard_idx, row_idx = self.order.locate(row_ids)
        features = {name: np.empty((positions.size, self.manifest.seq_len), dtype=np.int64)
                    for name in ("input_ids", "segment_ids", "positions")}
        for shard in np.unique(shard_idx):
            sel = shard_idx == shard
            decoded = self._shard(int(shard))
            for name, array in features.items():
                array[sel] = decoded[name][row_idx[sel]]
        return {
            "input_ids": torch.from_numpy(features["input_ids"]),
            "labels": torch.from_numpy(next_token_labels(features["input_ids"], features["segment_ids"])),
            "position_ids": torch.from_numpy(features["positions"]),
            "segment_ids": torch.from_numpy(features["segment_ids"]),
            "row_ids": torch.from_numpy(row_ids),
        }

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for local_batch in itertools.count(worker, workers):
            batch = self.batch(local_batch)
            if batch is None:
                return
            yield batch


def _distributed_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class PackedLoader:
    """Iterable of batches with ``state_dict``/``load_state_dict`` for exact resumption.

    ``rank``/``world_size`` default to the initialized ``torch.distributed`` group;
    ``epochs`` None streams forever (epochs follow each other without a gap).
    """

    def __init__(self, manifest: PackedManifest | str, cfg: LoaderConfig, rank: int | None = None,
                 world_size: int | None = None, epochs: int | None = None,
                 pin_memory: bool = False) -> None:
        self.manifest = manifest if isinstance(manifest, PackedManifest) else PackedManifest.load(manifest)
        self.cfg = cfg
        default_rank, default_world = _distributed_rank_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        self.rows_per_epoch = sum(s.rows for s in self.manifest.shard_list(cfg.shard_format))
        self.stop = None if epochs is None else epochs * self.rows_per_epoch
        self.pin_memory = pin_memory
        self.consumed = 0

    @property
    def epoch(self) -> int:
        return self.consumed // self.rows_per_epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        start = self.consumed
        dataset = PackedRows(self.manifest, self.cfg, self.rank, self.world_size, start, self.stop)
        # Worker base seeds come from a private generator (the rows need no randomness): starting an
        # iterator never draws from torch's global RNG, so the training loop's stream (dropout, MLM
        # masking) continues after a resume exactly as in an uninterrupted run.
        loader = DataLoader(dataset, batch_size=None, num_workers=self.cfg.num_workers,
                            pin_memory=self.pin_memory, generator=torch.Generator())
        local_rows = 0
        for batch in loader:
            local_rows += batch["input_ids"].shape[0]
            consumed = start + local_rows * self.world_size
            self.consumed = consumed if self.stop is None else min(consumed, self.stop)
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed, "shuffle_seed": self.cfg.shuffle_seed,
                "rows_per_epoch": self.rows_per_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if (state["shuffle_seed"], state["rows_per_epoch"]) != (self.cfg.shuffle_seed, self.rows_per_epoch):
            raise ValueError("loader state is from a different shuffle seed or shard set")
        self.consumed = int(state["consumed"])
