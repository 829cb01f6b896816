"""Unicode character classes, case mapping and UTF-8 decoding for the compiled kernels.

Tokenisation must match Python's ``re`` ``\\w`` (letters, digits and ``_`` of every script)
so that the word n-grams are the ones a reader would expect, but it runs inside Numba, which
has no Unicode database. We therefore precompute one byte per code point from Python's own
``str.isalnum``/``str.isspace`` (1.1 MB, built once per worker process) and look it up.

Lowercasing is Arrow's ``utf8_lower`` (part of the signature format). To fold it into the
kernel's scan, :data:`LOWERCASE` holds Arrow's own output for every code point (4.4 MB).
Both are built with vectorised NumPy/Arrow calls, once per process (cost: BENCHMARKS.md,
"Dedup speed and memory").
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

WORD = np.uint8(1)
SPACE = np.uint8(2)
REPLACEMENT_CHAR = 0xFFFD
CODE_POINTS = 0x110000


def _build_char_classes() -> np.ndarray:
    """NumPy's string predicates call CPython's per-character ones, so this equals a
    ``str.isalnum``/``str.isspace`` loop over all code points, without 1.1M Python steps."""
    chars = np.arange(CODE_POINTS, dtype=np.uint32).view("U1")
    word = np.strings.isalnum(chars) | (chars == "_")
    classes = np.zeros(CODE_POINTS, dtype=np.uint8)
    classes[np.strings.isspace(chars)] = SPACE
    classes[word] = WORD
    return classes


def _build_lowercase() -> np.ndarray:
    """``LOWERCASE[cp]``: the code point ``pc.utf8_lower`` turns ``cp`` into.

    Arrow maps each code point on its own (no context), so lowercasing one string of every
    encodable code point (all but the surrogates, which UTF-8 cannot carry) gives the table.
    """
    table = np.arange(CODE_POINTS, dtype=np.uint32)
    encodable = (table < 0xD800) | (table > 0xDFFF)
    utf8 = table[encodable].tobytes().decode("utf-32-le").encode()
    text = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, len(utf8)], np.int32)),
                                                  pa.py_buffer(utf8)])
    lowered = pc.utf8_lower(text).buffers()[2].to_pybytes().decode()
    table[encodable] = np.frombuffer(lowered.encode("utf-32-le"), dtype=np.uint32)
    return table


CHAR_CLASSES = _build_char_classes()
LOWERCASE = _build_lowercase()
# The ASCII fast path's one lookup per byte: the lowercase of an ASCII word byte, 0 for any
# other byte (ASCII non-word bytes and every byte of a multi-byte sequence).
_ascii_word = (np.arange(256) < 0x80) & (CHAR_CLASSES[:256] == WORD)
ASCII_WORD_LOWERCASE = np.where(_ascii_word, LOWERCASE[:256], 0).astype(np.uint8)


def _max_lowercase_growth() -> float:
    """Largest factor by which lowercasing changes a code point's UTF-8 length (1.5: U+023A
    'Ⱥ', 2 bytes, lowers to U+2C65, 3 bytes); it bounds the size of the normalised text."""
    cps = np.arange(CODE_POINTS)
    widths = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    return float((widths[LOWERCASE] / widths).max())


MAX_LOWERCASE_GROWTH = _max_lowercase_growth()


@njit(inline="always")
def utf8_width(cp):
    """Bytes in the UTF-8 encoding of code point ``cp``."""
    return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4


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
        return REPLACEMENT_CHAR, 1  # returning here, not falling through, keeps Numba from
    return REPLACEMENT_CHAR, 1      # reference-counting ``data`` on every call


@njit(inline="always")
def well_formed(data, i, cp, width):
    """Whether :func:`decode_utf8`'s ``(cp, width)`` at ``data[i]`` was strictly valid UTF-8.

    The decoder is lenient (it ignores continuation bits and accepts overlong forms and
    surrogates); this adds the checks that make a sequence well-formed per RFC 3629.
    """
    if width == 1:
        return data[i] < 0x80
    for k in range(1, width):
        if (data[i + k] & 0xC0) != 0x80:
            return False
    return utf8_width(cp) == width and not 0xD800 <= cp <= 0xDFFF


@njit(inline="always")
def encode_utf8(cp):
    """UTF-8 encoding of ``cp``: ``(bytes packed little-endian, first byte lowest; count)``."""
    if cp < 0x80:
        return cp, 1
    if cp < 0x800:
        return (0xC0 | (cp >> 6)) | ((0x80 | (cp & 0x3F)) << 8), 2
    if cp < 0x10000:
        return (0xE0 | (cp >> 12)) | ((0x80 | ((cp >> 6) & 0x3F)) << 8) | ((0x80 | (cp & 0x3F)) << 16), 3
    return ((0xF0 | (cp >> 18)) | ((0x80 | ((cp >> 12) & 0x3F)) << 8) | ((0x80 | ((cp >> 6) & 0x3F)) << 16)
            | ((0x80 | (cp & 0x3F)) << 24)), 4


def lowercase(texts: pa.Array) -> pa.Array:
    """Unicode-aware lowercasing, vectorised in Arrow's C++ kernels."""
    return pc.utf8_lower(texts)
