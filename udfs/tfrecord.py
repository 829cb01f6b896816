"""TFRecord contents of ``tf.train.Example`` int64 features, without TensorFlow or protobuf.

Bytes in, bytes or arrays out: the files are written and read by ``pipelines.pack.shards``
and ``pipelines.io.shards``.

Record framing (what ``tf.data.TFRecordDataset`` reads)::

    uint64 length            little-endian
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

CRC-32C is the Castagnoli polynomial (reflected 0x82F63B78, init and final xor 0xFFFFFFFF);
the *mask* is ``((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)``, which TensorFlow
applies so that a CRC stored next to the data it covers does not look like data to a CRC.
The kernel is table-driven "slicing by 8" in Numba (8 table look-ups per 8 input bytes).

``tf.train.Example`` is protobuf; the subset written here, with field numbers::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }   # map entry: key = 1, value = 2
    Feature   { Int64List int64_list = 3; }           # bytes_list = 1, float_list = 2
    Int64List { repeated int64 value = 1 [packed]; }

Integers are base-128 varints (negative int64 as their 64-bit two's complement, 10 bytes);
packed values are one length-delimited field holding the concatenated varints. The decoder
also accepts the unpacked encoding, which protobuf parsers must.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numba import njit

_MASK_DELTA = 0xA282EAD8
_POLY = 0x82F63B78
HEADER_BYTES = 12  # uint64 length + uint32 crc
FOOTER_BYTES = 4


class CorruptShardError(IOError):
    """A shard failed verification: a CRC or checksum mismatch, or the file is truncated."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path, self.offset, self.reason = str(path), int(offset), reason
        super().__init__(f"corrupt shard {self.path!r} at byte {self.offset}: {reason}")


def _crc_tables() -> np.ndarray:
    table = np.zeros((8, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            prev = int(table[k - 1, i])
            table[k, i] = (prev >> 8) ^ int(table[0, prev & 0xFF])
    return table


_TABLES = _crc_tables()


@njit(cache=True, nogil=True)
def _crc32c(data, start, end, tables):
    crc = np.uint32(0xFFFFFFFF)
    i = start
    while i + 8 <= end:
        lo = crc ^ (np.uint32(data[i]) | (np.uint32(data[i + 1]) << np.uint32(8))
                    | (np.uint32(data[i + 2]) << np.uint32(16)) | (np.uint32(data[i + 3]) << np.uint32(24)))
        crc = (tables[7, lo & np.uint32(0xFF)] ^ tables[6, (lo >> np.uint32(8)) & np.uint32(0xFF)]
               ^ tables[5, (lo >> np.uint32(16)) & np.uint32(0xFF)] ^ tables[4, lo >> np.uint32(24)]
               ^ tables[3, data[i + 4]] ^ tables[2, data[i + 5]]
               ^ tables[1, data[i + 6]] ^ tables[0, data[i + 7]])
        i += 8
    while i < end:
        crc = (crc >> np.uint32(8)) ^ tables[0, (crc ^ np.uint32(data[i])) & np.uint32(0xFF)]
        i += 1
    return crc ^ np.uint32(0xFFFFFFFF)


@njit(cache=True, nogil=True)
def _mask(crc):
    c = np.uint64(crc) & np.uint64(0xFFFFFFFF)
    rotated = ((c >> np.uint64(15)) | (c << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return np.uint32((rotated + np.uint64(_MASK_DELTA)) & np.uint64(0xFFFFFFFF))


def _as_u8(data) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data


def crc32c(data: bytes) -> int:
    """Unmasked CRC-32C (``crc32c(b"123456789") == 0xE3069283``)."""
    buf = _as_u8(data)
    return int(_crc32c(buf, 0, buf.shape[0], _TABLES))


def masked_crc32c(data: bytes) -> int:
    """CRC-32C of ``data``, masked as TFRecord stores it."""
    buf = _as_u8(data)
    return int(_mask(_crc32c(buf, 0, buf.shape[0], _TABLES)))


# ----------------------------------------------------------------------------------------
# Protobuf encoding of tf.train.Example with int64 features.


@njit(cache=True, nogil=True)
def _varint_size(v):
    u = np.uint64(v)
    n = 1
    while u >= np.uint64(0x80):
        u >>= np.uint64(7)
        n += 1
    return n


@njit(cache=True, nogil=True)
def _put_varint(out, pos, v):
    u = np.uint64(v)
    while u >= np.uint64(0x80):
        out[pos] = np.uint8((u & np.uint64(0x7F)) | np.uint64(0x80))
        u >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(u)
    return pos + 1


@njit(cache=True, nogil=True)
def _feature_sizes(packed, nonempty, name_len):
    """Message sizes of one feature: ``(Int64List, Feature, map entry)``, from its varints' bytes."""
    int64_list = 1 + _varint_size(packed) + packed if nonempty else 0
    feature = 1 + _varint_size(int64_list) + int64_list
    entry = 1 + _varint_size(name_len) + name_len + 1 + _varint_size(feature) + feature
    return int64_list, feature, entry


@njit(cache=True, nogil=True)
def _put_u32(out, pos, v):
    for b in range(4):
        out[pos + b] = np.uint8((v >> np.uint32(8 * b)) & np.uint32(0xFF))


@njit(cache=True, nogil=True)
def _framed_examples(values, offsets, names, name_offsets, tables):
    """One framed record per row: feature ``f`` of row ``r`` is ``values[offsets[f, r]:offsets[f, r + 1]]``.

    Two passes over the values (varint sizes, then bytes), so every length prefix is known
    before it is written and the output is allocated once.
    """
    k = offsets.shape[0]
    n = offsets.shape[1] - 1
    packed = np.zeros((k, n), dtype=np.int64)
    for f in range(k):
        for r in range(n):
            size = 0
            for i in range(offsets[f, r], offsets[f, r + 1]):
                size += _varint_size(values[i])
            packed[f, r] = size
    body = np.zeros(n, dtype=np.int64)  # the Features message of each row
    total = 0
    for r in range(n):
        for f in range(k):
            entry = _feature_sizes(packed[f, r], offsets[f, r + 1] > offsets[f, r],
                                   name_offsets[f + 1] - name_offsets[f])[2]
            body[r] += 1 + _varint_size(entry) + entry
        total += HEADER_BYTES + 1 + _varint_size(body[r]) + body[r] + FOOTER_BYTES
    out = np.empty(total, dtype=np.uint8)
    pos = 0
    for r in range(n):
        length = 1 + _varint_size(body[r]) + body[r]
        for b in range(8):
            out[pos + b] = np.uint8((length >> (8 * b)) & 0xFF)
        _put_u32(out, pos + 8, _mask(_crc32c(out, pos, pos + 8, tables)))
        begin = pos + HEADER_BYTES
        out[begin] = 0x0A  # Example.features
        p = _put_varint(out, begin + 1, body[r])
        for f in range(k):
            nonempty = offsets[f, r + 1] > offsets[f, r]
            name_len = name_offsets[f + 1] - name_offsets[f]
            int64_list, feature, entry = _feature_sizes(packed[f, r], nonempty, name_len)
            out[p] = 0x0A  # Features.feature map entry
            p = _put_varint(out, p + 1, entry)
            out[p] = 0x0A  # key
            p = _put_varint(out, p + 1, name_len)
            out[p:p + name_len] = names[name_offsets[f]:name_offsets[f + 1]]
            p += name_len
            out[p] = 0x12  # value: Feature
            p = _put_varint(out, p + 1, feature)
            out[p] = 0x1A  # Feature.int64_list
            p = _put_varint(out, p + 1, int64_list)
            if nonempty:
                out[p] = 0x0A  # Int64List.value, packed
                p = _put_varint(out, p + 1, packed[f, r])
                for i in range(offsets[f, r], offsets[f, r + 1]):
                    p = _put_varint(out, p, values[i])
        _put_u32(out, p, _mask(_crc32c(out, begin, p, tables)))
        pos = p + FOOTER_BYTES
    return out


def example_records(features: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """TFRecord file contents (uint8): one framed ``tf.train.Example`` per row.

    A feature is a 2-D array (one row per record) or, for rows of different lengths,
    ``(values, row_offsets)`` with row ``r`` at ``values[row_offsets[r]:row_offsets[r + 1]]``.
    Every feature has the same number of rows; features are written in dict order, each row's
    values as a packed ``int64_list``. One Numba pass for a whole shard.
    """
    first = next(iter(features.values()), None)
    n = 0 if first is None else (len(first[1]) - 1 if isinstance(first, tuple) else np.asarray(first).shape[0])
    return _records(features, n)


def _flat(feature, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, row_offsets)`` of a 2-D array or of a ragged ``(values, row_offsets)`` pair."""
    if isinstance(feature, tuple):
        values, offsets = np.asarray(feature[0]).reshape(-1), np.asarray(feature[1], dtype=np.int64)
        if offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != values.size or np.any(np.diff(offsets) < 0):
            raise ValueError("ragged feature offsets do not cover its values row by row")
        return values, offsets
    m = np.asarray(feature)
    if m.ndim != 2 or m.shape[0] != n:
        raise ValueError("features must be 2-D arrays with the same number of rows")
    return m.reshape(-1), np.arange(n + 1, dtype=np.int64) * m.shape[1]


def _records(features: dict, n: int) -> np.ndarray:
    flats = [_flat(feature, n) for feature in features.values()]
    values = np.empty(sum(v.size for v, _ in flats), dtype=np.int64)
    offsets = np.empty((len(flats), n + 1), dtype=np.int64)
    base = 0
    for f, (v, row_offsets) in enumerate(flats):
        values[base:base + v.size] = v
        offsets[f] = base + row_offsets
        base += v.size
    encoded = [name.encode("utf-8") for name in features]
    names = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    name_offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=name_offsets[1:])
    return _framed_examples(values, offsets, names, name_offsets, _TABLES)


def encode_example(features: dict[str, np.ndarray]) -> bytes:
    """Serialize ``tf.train.Example`` with one ``int64_list`` feature per entry, in dict order."""
    one_row = {name: np.asarray(values).reshape(1, -1) for name, values in features.items()}
    return _records(one_row, 1)[HEADER_BYTES:-FOOTER_BYTES].tobytes()


@njit(cache=True, nogil=True)
def _decode_varints(buf, start, end, out, count):
    """Append the varints of ``buf[start:end]`` to ``out[count:]``; -1 if malformed."""
    pos = start
    while pos < end:
        u = np.uint64(0)
        shift = 0
        while True:
            if pos >= end or shift > 63:
                return -1
            b = buf[pos]
            pos += 1
            u |= np.uint64(b & 0x7F) << np.uint64(shift)
            shift += 7
            if b < 0x80:
                break
        out[count] = np.int64(u)
        count += 1
    return count


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(field_number, wire_type, value_or_start, end)`` for each field of a message."""
    pos = start
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire == 2:
            length, pos = _read_varint(buf, pos, end)
            if pos + length > end:
                raise ValueError("length-delimited field runs past its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 1:
            if pos + 8 > end:
                raise ValueError("truncated fixed64 field")
            yield number, wire, pos, pos + 8
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise ValueError("truncated fixed32 field")
            yield number, wire, pos, pos + 4
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _int64_list(buf: memoryview, arr: np.ndarray, start: int, end: int) -> np.ndarray:
    out = np.empty(end - start, dtype=np.int64)  # a varint is at least one byte
    count = 0
    for number, wire, a, b in _fields(buf, start, end):
        if number != 1:
            continue
        if wire == 2:
            count = _decode_varints(arr, a, b, out, count)
            if count < 0:
                raise ValueError("malformed packed varints")
        elif wire == 0:
            out[count] = np.int64(np.uint64(a))
            count += 1
        else:
            raise ValueError("Int64List value has the wrong wire type")
    return out[:count].copy()


def decode_example(data: bytes) -> dict[str, np.ndarray]:
    """Parse a serialized ``tf.train.Example`` whose features are all ``int64_list``."""
    buf = memoryview(bytes(data)) if not isinstance(data, (bytes, bytearray)) else memoryview(data)
    arr = np.frombuffer(buf, dtype=np.uint8)
    out: dict[str, np.ndarray] = {}
    for n1, w1, fs, fe in _fields(buf, 0, len(buf)):
        if n1 != 1 or w1 != 2:
            continue
        for n2, w2, es, ee in _fields(buf, fs, fe):
            if n2 != 1 or w2 != 2:
                continue
            key, values = "", np.zeros(0, dtype=np.int64)
            for n3, w3, a, b in _fields(buf, es, ee):
                if n3 == 1 and w3 == 2:
                    key = bytes(buf[a:b]).decode("utf-8")
                elif n3 == 2 and w3 == 2:
                    for n4, w4, c, d in _fields(buf, a, b):
                        if n4 == 3 and w4 == 2:
                            values = _int64_list(buf, arr, c, d)
                        elif n4 in (1, 2):
                            raise ValueError("only int64_list features are supported")
            out[key] = values
    return out


# ----------------------------------------------------------------------------------------
# Record framing.


def frame_record(data: bytes) -> bytes:
    """One TFRecord: header, data, footer."""
    length = len(data).to_bytes(8, "little")
    return (length + masked_crc32c(length).to_bytes(4, "little") + bytes(data)
            + masked_crc32c(data).to_bytes(4, "little"))


@njit(cache=True, nogil=True)
def _scan(buf, tables):
    """Walk the framing of a whole file: ``(starts, lengths, n, error, error_offset)``.

    ``error``: 0 none, 1 truncated header, 2 length CRC mismatch, 3 truncated data,
    4 data CRC mismatch.
    """
    size = buf.shape[0]
    cap = max(size // (HEADER_BYTES + FOOTER_BYTES), 1)
    starts = np.empty(cap, dtype=np.int64)
    lengths = np.empty(cap, dtype=np.int64)
    n = 0
    pos = 0
    while pos < size:
        if pos + HEADER_BYTES > size:
            return starts, lengths, n, 1, pos
        length = np.uint64(0)
        for k in range(8):
            length |= np.uint64(buf[pos + k]) << np.uint64(8 * k)
        stored = np.uint32(0)
        for k in range(4):
            stored |= np.uint32(buf[pos + 8 + k]) << np.uint32(8 * k)
        if _mask(_crc32c(buf, pos, pos + 8, tables)) != stored:
            return starts, lengths, n, 2, pos
        if pos + HEADER_BYTES + FOOTER_BYTES > size:
            return starts, lengths, n, 3, pos
        if length > np.uint64(size - pos - HEADER_BYTES - FOOTER_BYTES):
            return starts, lengths, n, 3, pos
        begin = pos + HEADER_BYTES
        end = begin + np.int64(length)
        stored = np.uint32(0)
        for k in range(4):
            stored |= np.uint32(buf[end + k]) << np.uint32(8 * k)
        if _mask(_crc32c(buf, begin, end, tables)) != stored:
            return starts, lengths, n, 4, pos
        starts[n] = begin
        lengths[n] = end - begin
        n += 1
        pos = end + FOOTER_BYTES
    return starts, lengths, n, 0, pos


_SCAN_ERRORS = {
    1: "truncated record header",
    2: "length CRC mismatch",
    3: "truncated record data (length runs past the end of the file)",
    4: "data CRC mismatch",
}


def scan_records(contents: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Verify the framing of a whole TFRecord file's ``contents``: ``(starts, lengths)`` of its records' data.

    Raises :class:`CorruptShardError` naming the file ``name`` at the first bad record.
    """
    starts, lengths, n, error, offset = _scan(np.frombuffer(contents, dtype=np.uint8), _TABLES)
    if error:
        raise CorruptShardError(name, int(offset), _SCAN_ERRORS[int(error)])
    return starts[:n], lengths[:n]


__all__ = ["CorruptShardError", "crc32c", "masked_crc32c", "example_records", "encode_example", "decode_example",
           "frame_record", "scan_records"]
