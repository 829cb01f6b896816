"""The Megatron-LM indexed-dataset files: index layout and round trip (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from udfs import megatron


def test_megatron_index_round_trip_and_layout():
    lengths = np.array([3, 1, 70000, 5])
    data = megatron.index_bytes(lengths, np.uint16)
    assert data[:9] == b"MMIDIDX\x00\x00" and int.from_bytes(data[9:17], "little") == 1 and data[17] == 8
    assert int.from_bytes(data[18:26], "little") == 4 and int.from_bytes(data[26:34], "little") == 5
    dtype, got_lengths, pointers, documents = megatron.read_index(data)
    assert dtype == np.uint16 and got_lengths.tolist() == lengths.tolist()
    assert pointers.tolist() == [0, 6, 8, 140008] and documents.tolist() == [0, 1, 2, 3, 4]
    assert megatron.read_index(megatron.index_bytes(lengths, np.int32))[2].tolist() == [0, 12, 16, 280016]
    with pytest.raises(ValueError, match="header implies"):
        megatron.read_index(data[:-1])
    tokens = np.arange(10, dtype=np.int64)
    assert np.array_equal(np.frombuffer(megatron.data_bytes(tokens, np.uint16), "<u2"), tokens)
