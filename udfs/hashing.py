"""xxHash64 as a Numba kernel, bit-for-bit equal to the reference ``xxhash.xxh64``.

Why our own copy: the MinHash kernel hashes every token inside one compiled loop, so the
hash must be callable from Numba without a Python round trip. xxHash64 is the hash of
record because its output is specified (and checked here against the ``xxhash`` package in
the tests); signatures and ids persisted by one release must be reproducible by the next.

All arithmetic is on ``np.uint64`` and wraps modulo 2**64, exactly as the C reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)


@njit(inline="always")
def rotl64(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(inline="always")
def load_le(data, i, width):
    """Little-endian word of ``width`` bytes at ``data[i]``.

    The unsigned index spares Numba's negative-index wraparound, so LLVM merges the byte
    loads into one unaligned load.
    """
    i = np.uint64(i)
    v = np.uint64(0)
    for k in range(width):
        v |= np.uint64(data[i + np.uint64(k)]) << np.uint64(8 * k)
    return v


@njit(inline="always")
def store_le(out, i, v, width):
    """Store the low ``width`` bytes of ``v`` at ``out[i]``, little-endian (one store, as above)."""
    i = np.uint64(i)
    for k in range(width):
        out[i + np.uint64(k)] = np.uint8((v >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(inline="always")
def _round(acc, lane):
    return _round_scaled(acc, lane * P2)


@njit(inline="always")
def _round_scaled(acc, scaled_lane):
    """xxHash64's round given ``lane * P2``, for callers that reuse one lane in many rounds."""
    return rotl64(acc + scaled_lane, 31) * P1


@njit(inline="always")
def _merge_round(acc, val):
    acc ^= _round(np.uint64(0), val)
    return acc * P1 + P4


@njit(inline="always")
def avalanche64(h):
    """The xxHash64 finaliser: a bijection on 64-bit words with full avalanche."""
    h ^= h >> np.uint64(33)
    h *= P2
    h ^= h >> np.uint64(29)
    h *= P3
    h ^= h >> np.uint64(32)
    return h


@njit
def xxh64(data, start, end, seed):
    """xxHash64 of ``data[start:end]`` (a uint8 array) with a uint64 ``seed``."""
    seed = np.uint64(seed)
    length = end - start
    i = start
    if length >= 32:
        v1 = seed + P1 + P2
        v2 = seed + P2
        v3 = seed
        v4 = seed - P1
        limit = end - 32
        while i <= limit:
            v1 = _round(v1, load_le(data, i, 8))
            v2 = _round(v2, load_le(data, i + 8, 8))
            v3 = _round(v3, load_le(data, i + 16, 8))
            v4 = _round(v4, load_le(data, i + 24, 8))
            i += 32
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18)
        h = _merge_round(h, v1)
        h = _merge_round(h, v2)
        h = _merge_round(h, v3)
        h = _merge_round(h, v4)
    else:
        h = seed + P5
    h += np.uint64(length)
    while i + 8 <= end:
        h ^= _round(np.uint64(0), load_le(data, i, 8))
        h = rotl64(h, 27) * P1 + P4
        i += 8
    if i + 4 <= end:
        h ^= load_le(data, i, 4) * P1
        h = rotl64(h, 23) * P2 + P3
        i += 4
    while i < end:
        h ^= np.uint64(data[i]) * P5
        h = rotl64(h, 11) * P1
        i += 1
    return avalanche64(h)
