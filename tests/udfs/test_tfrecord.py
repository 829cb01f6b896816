"""TFRecord framing, CRC-32C and tf.train.Example encoding against independent oracles."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import tfrecord_records
from udfs.tfrecord import (CorruptShardError, crc32c, decode_example, encode_example, example_records, frame_record,
                           masked_crc32c)


def _crc32c_bitwise(data: bytes) -> int:
    """The textbook bit-at-a-time CRC-32C: an oracle independent of the sliced tables."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_vectors():
    # RFC 3720 (iSCSI) appendix B.4 and the classic check value.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 15, 16, 17, 100, 1023])
def test_crc32c_matches_bitwise_reference(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == _crc32c_bitwise(data)


def test_masked_crc_formula():
    for data in (b"", b"a", b"hello world" * 10):
        crc = _crc32c_bitwise(data)
        expected = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        assert masked_crc32c(data) == expected


def test_encode_example_bytes_by_hand():
    # Example{features{feature{key:"a" value{int64_list{value:[1, 300]}}}}}, encoded by hand:
    # Int64List 0a 03 01 ac 02 | Feature 1a 05 | entry 0a 01 61 12 07 | Features 0a 0c | Example 0a 0e
    expected = bytes.fromhex("0a0e" "0a0c" "0a0161" "1207" "1a05" "0a0301ac02")
    assert encode_example({"a": np.array([1, 300])}) == expected


def test_example_round_trip_including_negatives_and_empty():
    features = {
        "input_ids": np.array([0, 1, 127, 128, 16383, 16384, 65535, 2**31 - 1]),
        "segment_ids": np.array([1, 1, 2, 2, 2, 3, 0, 0]),
        "neg": np.array([-1, -(2**63), 2**63 - 1]),
        "empty": np.zeros(0, dtype=np.int64),
    }
    decoded = decode_example(encode_example(features))
    assert list(decoded) == list(features)
    for name, values in features.items():
        assert decoded[name].dtype == np.int64
        np.testing.assert_array_equal(decoded[name], values)


def test_decode_accepts_unpacked_int64_list():
    # value: 5 and value: 7 as two separate non-packed fields (08 05 08 07)
    int64_list = bytes.fromhex("08050807")
    feature = b"\x1a" + bytes([len(int64_list)]) + int64_list
    entry = b"\x0a\x01x" + b"\x12" + bytes([len(feature)]) + feature
    features = b"\x0a" + bytes([len(entry)]) + entry
    example = b"\x0a" + bytes([len(features)]) + features
    np.testing.assert_array_equal(decode_example(example)["x"], [5, 7])


def _records():
    rng = np.random.default_rng(1)
    return [encode_example({"v": rng.integers(0, 50_000, n)}) for n in (3, 0, 100, 2048)]


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "a.tfrecord"
    records = _records()
    path.write_bytes(b"".join(map(frame_record, records)))
    assert path.stat().st_size == sum(len(r) + 16 for r in records)
    assert tfrecord_records(path) == records
    # framing by hand: length, masked crc of the length, data, masked crc of the data
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n == len(records[0])
    assert int.from_bytes(raw[8:12], "little") == masked_crc32c(raw[:8])
    assert raw[12:12 + n] == records[0]
    assert int.from_bytes(raw[12 + n:16 + n], "little") == masked_crc32c(records[0])


def test_whole_shard_encoder_equals_framing_each_row(tmp_path):
    """The one-pass shard encoder writes what framing each row's Example separately writes."""
    rng = np.random.default_rng(2)
    features = {"input_ids": rng.integers(0, 70_000, (9, 33)).astype(np.int32),
                "segment_ids": rng.integers(0, 4, (9, 33)).astype(np.uint16),
                "neg": rng.integers(-(2**40), 2**40, (9, 2))}
    rows = [encode_example({k: v[r] for k, v in features.items()}) for r in range(9)]
    path = tmp_path / "shard.tfrecord"
    path.write_bytes(b"".join(map(frame_record, rows)))
    assert example_records(features).tobytes() == path.read_bytes()
    assert [decode_example(r)["neg"].tolist() for r in tfrecord_records(path)] == features["neg"].tolist()
    assert example_records({"a": np.zeros((0, 5), np.int64)}).size == 0


def test_empty_file_has_no_records(tmp_path):
    path = tmp_path / "empty.tfrecord"
    path.write_bytes(b"")
    assert tfrecord_records(path) == []


@pytest.mark.parametrize("where", ["length", "length_crc", "data", "data_crc"])
def test_reader_rejects_flipped_byte(tmp_path, where):
    path = tmp_path / "bad.tfrecord"
    records = _records()
    raw = bytearray(b"".join(map(frame_record, records)))
    second = 16 + len(records[0])  # start of the second record (an empty example)
    third = second + 16 + len(records[1])
    offset = {"length": third + 1, "length_crc": third + 9, "data": third + 12 + 40,
              "data_crc": third + 12 + len(records[2]) + 2}[where]
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptShardError) as err:
        tfrecord_records(path)
    assert "bad.tfrecord" in str(err.value)
    assert err.value.offset == third
    assert "CRC" in err.value.reason or "truncated" in err.value.reason


@pytest.mark.parametrize("cut", [1, 5, 13, 500])
def test_reader_rejects_truncated_file(tmp_path, cut):
    path = tmp_path / "short.tfrecord"
    raw = b"".join(map(frame_record, _records()))
    path.write_bytes(raw[:-cut])
    with pytest.raises(CorruptShardError, match="short.tfrecord") as err:
        tfrecord_records(path)
    assert "truncated" in err.value.reason or "CRC" in err.value.reason
