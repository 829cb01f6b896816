"""The runtime's file layer on a local directory and on fsspec's memory:// (a bucket stand-in)."""

from __future__ import annotations

import glob
import os

import pytest

from pipelines.io import uri

NAMES = ["model.safetensors", "model-00001-of-00002.safetensors", "pytorch_model.bin", "pytorch_model-1.bin",
         "config.json", "safetensors", "x.SAFETENSORS"]
PATTERNS = ["*", "*.safetensors", "pytorch_model*.bin", "*.json", "none*"]


@pytest.fixture
def local_dir(tmp_path) -> str:
    for name in NAMES:
        (tmp_path / name).write_bytes(b"")
    return str(tmp_path)


def test_listdir_patterns_match_glob(local_dir, tmp_path):
    remote = f"memory://listdir-{tmp_path.name}"
    uri.upload_dir(local_dir, remote)
    for pattern in PATTERNS:
        expected = sorted(os.path.basename(p) for p in glob.glob(os.path.join(local_dir, pattern)))
        assert uri.listdir(local_dir, pattern) == uri.listdir(remote, pattern) == expected, pattern
    assert uri.listdir(os.path.join(local_dir, "missing"), "*") == []


@pytest.mark.parametrize("scheme", ["local", "memory"])
def test_text_round_trip(tmp_path, scheme):
    """Written as UTF-8 bytes; read back with ``open``'s newlines (``\\r\\n`` and ``\\r`` end lines)."""
    path = str(tmp_path / "a.txt") if scheme == "local" else f"memory://text-{tmp_path.name}/a.txt"
    with uri.open_text(path, "w") as fh:
        fh.write("plums\u2028kale\nfigs\r\ntea\rmilk")
    assert uri.read_bytes(path) == "plums\u2028kale\nfigs\r\ntea\rmilk".encode("utf-8")
    with uri.open_text(path) as fh:
        assert list(fh) == ["plums\u2028kale\n", "figs\n", "tea\n", "milk"]
