"""Zero-copy views of Arrow arrays as the NumPy buffers the Numba kernels consume."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def string_buffers(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(offsets, data, valid)`` for an Arrow ``string``/``large_string`` array.

    ``offsets`` is int64 of length ``len(arr) + 1`` indexing into ``data`` (uint8), already
    shifted for sliced arrays; ``valid`` is a bool mask (False for nulls).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise TypeError(f"expected a string array, got {arr.type}")
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()
    off_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=off_dtype)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, dtype=np.bool_)
    return offsets, data, valid


def binary_from_rows(matrix: np.ndarray) -> pa.Array:
    """Pack the rows of a 2-D C-contiguous array as one Arrow ``binary`` value each."""
    matrix = np.ascontiguousarray(matrix)
    n = matrix.shape[0]
    width = matrix.strides[0] if n else 0
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(matrix.tobytes())])


def rows_from_binary(arr: pa.Array | pa.ChunkedArray, dtype: np.dtype, width: int) -> np.ndarray:
    """Inverse of :func:`binary_from_rows`: a ``(len(arr), width)`` array of ``dtype``."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return np.zeros((0, width), dtype=dtype)
    if arr.null_count:
        raise ValueError("signature column holds nulls")
    _, offsets_buf, data_buf = arr.buffers()
    off_dtype = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=off_dtype)[arr.offset : arr.offset + n + 1]
    item = np.dtype(dtype).itemsize * width
    if not np.all(np.diff(offsets) == item):
        raise ValueError(f"expected binary values of {item} bytes each")
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[0] + n * item]
    return data.view(dtype).reshape(n, width)


def as_from_spark(*columns: pa.Array) -> list[pa.Array]:
    """``columns`` after an Arrow IPC round trip, as a Python worker receives them from Spark."""
    batch = pa.RecordBatch.from_arrays(list(columns), names=[str(k) for k in range(len(columns))])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return pa.ipc.open_stream(sink.getvalue()).read_next_batch().columns
