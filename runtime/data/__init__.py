"""Packed-shard loading: manifest, shard decoding and the resumable batch stream."""

from runtime.data.loader import IGNORE_INDEX, PackedLoader, next_token_labels
from runtime.data.shards import PackedManifest, ShardInfo, read_shard

__all__ = ["IGNORE_INDEX", "PackedLoader", "PackedManifest", "ShardInfo", "next_token_labels",
           "read_shard"]
