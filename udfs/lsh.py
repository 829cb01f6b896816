"""LSH banding: band keys, the candidate pairs of each bucket and signature agreement.

How many bands of how many rows a threshold calls for is :mod:`udfs.banding` (driver-side,
with SciPy; the Python workers that run this module's kernels never import it).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from udfs.hashing import P5, _round, avalanche64
from udfs.pairs import distinct_pairs


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(n, bands)`` int64 bucket keys: band ``j`` hashes ``sig[j*rows:(j+1)*rows]``.

    The key is xxHash64's round function folded over the band's values, seeded with the band
    index and finalised with its avalanche step, so equal bands (and only those, up to a 2**-64
    chance) give equal keys and keys of different bands never mix.
    """
    return _band_keys(signatures, bands, rows)


@njit(cache=True)
def _band_keys(signatures, bands, rows):
    n = signatures.shape[0]
    out = np.empty((n, bands), dtype=np.int64)
    for d in range(n):
        for j in range(bands):
            h = P5 + np.uint64(j)
            for k in range(j * rows, (j + 1) * rows):
                h = _round(h, np.uint64(signatures[d, k]))
            out[d, j] = np.int64(avalanche64(h + np.uint64(rows)))
    return out


def split_by_part(keys: np.ndarray, ids: np.ndarray, parts: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(part, keys, ids)`` for each non-empty part, a key's part being ``key mod parts``.

    Every row of one bucket (one key) lands in the same part, so a part can be grouped on its
    own. Keys are avalanche-mixed hashes, so parts are evenly filled.
    """
    part = (keys.view(np.uint64) % np.uint64(parts)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    return [(p, keys[order[lo:hi]], ids[order[lo:hi]])
            for p, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])) if hi > lo]


def spark_int_hash(values: np.ndarray, seed: int = 42) -> np.ndarray:
    """Spark's ``hash`` of 32-bit integers (Murmur3 x86_32, ``hashInt``, seed 42).

    It is what hash partitioning computes: ``repartition(n, col)`` sends a row to partition
    ``pmod(hash(col), n)``.
    """
    def rotl(x, r):
        return (x << np.uint32(r)) | (x >> np.uint32(32 - r))

    k = rotl(values.astype(np.int64).astype(np.uint32) * np.uint32(0xCC9E2D51), 15) * np.uint32(0x1B873593)
    h = rotl(np.uint32(seed) ^ k, 13) * np.uint32(5) + np.uint32(0xE6546B64)
    h ^= np.uint32(4)  # the input's length in bytes
    h = (h ^ (h >> np.uint32(16))) * np.uint32(0x85EBCA6B)
    h = (h ^ (h >> np.uint32(13))) * np.uint32(0xC2B2AE35)
    return (h ^ (h >> np.uint32(16))).view(np.int32)


def partition_tags(parts: int) -> np.ndarray:
    """``tags[p]``: the smallest non-negative integer that ``repartition(parts, col)`` sends to partition ``p``.

    Tagging part ``p``'s rows with ``tags[p]`` puts every part in a partition of its own. Tagged
    with ``p`` itself, parts would land where their hash sends them: with two parts, both in the
    same partition half of the time, and in general about a third of the partitions empty.
    """
    tags = np.full(parts, -1, dtype=np.int64)
    start = 0
    while (tags < 0).any():
        candidates = np.arange(start, start + 4 * parts, dtype=np.int64)
        target = np.mod(spark_int_hash(candidates).astype(np.int64), parts)
        first = np.unique(target, return_index=True)
        open_parts = tags[first[0]] < 0
        tags[first[0][open_parts]] = candidates[first[1][open_parts]]
        start += 4 * parts
    return tags


def bucket_pairs(keys: np.ndarray, ids: np.ndarray, all_pairs_up_to: int,
                 neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct candidate pairs ``(src > dst)`` of the buckets (equal ``keys``) among the given rows.

    Which pairs of a bucket of ``k > 1`` members are candidates:

    * ``k <= all_pairs_up_to``: every pair, ``k(k-1)/2``. A star on one member would test
      each member only against that centre, so two duplicates that both differ from the
      centre would never be compared (successive versions of a file around an old one);
    * larger buckets (boilerplate shared by thousands of documents): the members in an order
      drawn per bucket by a hash of ``(key, id)``, each paired with the next ``neighbours``
      in that order, ``~k * neighbours`` pairs. Every member gets fresh random partners in
      each of its ``b`` bands, and the component pass needs only one verified path.

    Band keys are seeded by their band (:func:`band_keys`), so the key alone names a bucket.
    One sort groups the rows (O(n log n) whatever the bucket sizes); the same pair met in
    several bands comes out once.
    """
    if all_pairs_up_to < 2 or neighbours < 1:
        raise ValueError("all_pairs_up_to must be at least 2 and neighbours at least 1")
    empty = np.zeros(0, np.int64)
    if len(ids) == 0:
        return empty, empty
    order = np.lexsort((member_order_keys(keys, ids), keys))
    key, member = keys[order], ids[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    sizes = np.diff(np.append(starts, len(key)))
    size = np.repeat(sizes, sizes)  # each row's bucket size
    position = np.arange(len(key)) - np.repeat(starts, sizes)  # and its place in the bucket
    shared = size > 1  # most rows are alone in their bucket
    member, size, position = member[shared], size[shared], position[shared]
    reach = np.where(size <= all_pairs_up_to, size - 1, neighbours)  # partners after a row
    src, dst = [], []
    for step in range(1, int(reach.max(initial=0)) + 1):
        rows = np.flatnonzero((step <= reach) & (position + step < size))
        src.append(member[rows])
        dst.append(member[rows + step])
    if not src:
        return empty, empty
    a, b = np.concatenate(src), np.concatenate(dst)
    return distinct_pairs(np.maximum(a, b), np.minimum(a, b))


def member_order_keys(keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``avalanche64(key ^ id)`` per row: the order of a large bucket's members, drawn per bucket.

    A compiled loop cached beside its source, not the scalar finaliser applied to whole arrays
    from Python: Numba would compile that array form afresh in every worker process (0.7 s on
    the critical path of the LSH stage).
    """
    return _member_order_keys(keys.view(np.uint64), ids.view(np.uint64))


@njit(cache=True)
def _member_order_keys(keys, ids):
    out = np.empty(keys.shape[0], dtype=np.uint64)
    for i in range(keys.shape[0]):
        out[i] = avalanche64(keys[i] ^ ids[i])
    return out


def bucket_pairs_against(keys: np.ndarray, ids: np.ndarray, indexed_keys: np.ndarray, indexed_ids: np.ndarray,
                         all_pairs_up_to: int, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bucket_pairs` over the rows together with the indexed rows of their buckets, less the
    pairs of two indexed rows.

    Which pairs a bucket yields depends on its members alone (all pairs up to ``all_pairs_up_to``,
    else neighbours in an order drawn from ``(key, id)``), so these are exactly the pairs that
    one pass over both sets of rows gives and that involve a row of the first set: indexed rows
    of buckets the first set does not reach cannot pair with it and are dropped before the sort.
    Ids must differ between the two sets.
    """
    shared = np.isin(indexed_keys, keys)
    old_ids = indexed_ids[shared]
    src, dst = bucket_pairs(np.concatenate((keys, indexed_keys[shared])), np.concatenate((ids, old_ids)),
                            all_pairs_up_to, neighbours)
    new = ~(np.isin(src, old_ids) & np.isin(dst, old_ids))
    return src[new], dst[new]


def signature_agreement(signatures: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """For each pair ``p``, the fraction of positions where rows ``left[p]`` and ``right[p]`` of
    the signature matrix agree: the Jaccard estimate. A row in many pairs is read in place each
    time, never copied."""
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    if len(left) and (min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= len(signatures)):
        raise IndexError(f"signature row out of range for {len(signatures)} rows")
    return _signature_agreement(np.ascontiguousarray(signatures), left, right)


@njit(cache=True)
def _signature_agreement(signatures, left, right):
    width = signatures.shape[1]
    out = np.empty(left.shape[0], dtype=np.float64)
    for p in range(left.shape[0]):
        same = 0
        for k in range(width):
            same += signatures[left[p], k] == signatures[right[p], k]
        out[p] = same / width
    return out
