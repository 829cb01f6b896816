import numpy as np
import pytest
import xxhash
from numba import njit

from udfs.hashing import load_le, store_le, xxh64


@pytest.mark.parametrize("seed", [0, 1, 2**63 + 5])
def test_xxh64_matches_reference_for_every_length(seed):
    rng = np.random.default_rng(seed % 1000)
    for length in list(range(0, 80)) + [255, 1000, 4097]:
        data = rng.integers(0, 256, size=length, dtype=np.uint8)
        expected = xxhash.xxh64_intdigest(data.tobytes(), seed=seed)
        assert int(xxh64(data, 0, length, np.uint64(seed))) == expected, length


def test_xxh64_of_a_slice_equals_hash_of_the_bytes():
    data = np.frombuffer(b"prefix-the middle part-suffix", dtype=np.uint8)
    assert int(xxh64(data, 7, 22, np.uint64(0))) == xxhash.xxh64_intdigest(b"the middle part")



@njit
def _load(data, i, width):
    return load_le(data, i, width)


@njit
def _store(out, i, value, width):
    store_le(out, i, value, width)


def test_little_endian_words_at_any_offset():
    data = np.arange(1, 17, dtype=np.uint8)
    for width in (1, 3, 4, 8):
        for i in range(3):
            word = int(_load(data, i, width))
            assert word == int.from_bytes(data[i:i + width].tobytes(), "little")
            out = np.zeros(16, dtype=np.uint8)
            _store(out, 5, np.uint64(word), width)
            assert out.tobytes() == bytes(5) + data[i:i + width].tobytes() + bytes(11 - width)
