"""Unicode character classes and UTF-8 decoding for the compiled kernels.

Tokenisation must match Python's ``re`` ``\\w`` (letters, digits and ``_`` of every script)
so that the word n-grams are the ones a reader would expect, but it runs inside Numba, which
has no Unicode database. We therefore precompute one byte per code point from Python's own
``str.isalnum``/``str.isspace`` (1.1 MB, built once per worker process) and look it up.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

WORD = np.uint8(1)
SPACE = np.uint8(2)
REPLACEMENT_CHAR = 0xFFFD


def _build_char_classes() -> np.ndarray:
    classes = np.zeros(0x110000, dtype=np.uint8)
    for cp in range(0x110000):
        ch = chr(cp)
        if ch.isalnum() or ch == "_":
            classes[cp] = WORD
        elif ch.isspace():
            classes[cp] = SPACE
    return classes


CHAR_CLASSES = _build_char_classes()


@njit(inline="always")
def decode_utf8(data, i, end):
    """Decode one code point at ``data[i]``; returns ``(code_point, byte_length)``.

    Malformed or truncated sequences decode to U+FFFD one byte at a time, as Python's
    ``errors='replace'`` does, so a bad byte never stalls or crashes the kernel.
    """
    b0 = np.int64(data[i])
    if b0 < 0x80:
        return b0, 1
    if (b0 >> 5) == 0x6 and i + 1 < end:
        return ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if (b0 >> 4) == 0xE and i + 2 < end:
        return ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    if (b0 >> 3) == 0x1E and i + 3 < end:
        cp = ((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
        cp |= ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)
        if cp < 0x110000:
            return cp, 4
    return REPLACEMENT_CHAR, 1


def lowercase(texts: pa.Array) -> pa.Array:
    """Unicode-aware lowercasing, vectorised in Arrow's C++ kernels."""
    return pc.utf8_lower(texts)
