"""One file layer for worker- and runtime-side code: local paths and any URI.

``pyarrow.fs.FileSystem.from_uri`` handles local paths, ``file://``, ``gs://``, ``s3://`` and
``hdfs://``; a scheme it does not know (``memory://``, ``gcs://``, ``az://``, ...) goes through
fsspec wrapped as a pyarrow filesystem (``PyFileSystem(FSSpecHandler(...))``), so callers
see one API whatever the storage. Paths without a scheme are local. The driver-side
(Hadoop) layer is ``pipelines.io.hadoop``.
"""

from __future__ import annotations

import fnmatch
import io
import os
import posixpath

import pyarrow as pa
from pyarrow import fs as pafs
from pyarrow.lib import ArrowInvalid, ArrowNotImplementedError


def is_remote(uri: str) -> bool:
    """True for any URI other than a local path or ``file://``."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` for a local path or URI."""
    uri = str(uri)
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ArrowInvalid, ArrowNotImplementedError):  # a scheme pyarrow does not know: fsspec's
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        filesystem, path = fsspec.core.url_to_fs(uri)
        return PyFileSystem(FSSpecHandler(filesystem)), path


def join(base: str, *parts: str) -> str:
    """``base/part/...`` keeping ``base``'s scheme (``os.path.join`` for local paths)."""
    return posixpath.join(str(base), *parts) if "://" in str(base) else os.path.join(base, *parts)


def parent(uri: str) -> str:
    """The directory holding ``uri`` (absolute for local paths)."""
    uri = str(uri).rstrip("/")
    return uri.rsplit("/", 1)[0] if "://" in uri else os.path.dirname(os.path.abspath(uri))


def open_uri(uri: str, mode: str):
    """A binary file object: ``open`` for local paths (and ``file://``), a pyarrow stream otherwise."""
    uri = str(uri)
    if not is_remote(uri):
        return open(uri.removeprefix("file://"), mode)
    filesystem, path = resolve(uri)
    return filesystem.open_output_stream(path) if "w" in mode else filesystem.open_input_file(path)


def open_text(uri: str, mode: str = "r") -> io.TextIOWrapper:
    """A UTF-8 text file over ``open_uri`` (``r`` or ``w``), newlines as ``open`` treats them."""
    return io.TextIOWrapper(open_uri(uri, mode + "b"), encoding="utf-8")


def open_input(uri: str) -> pa.NativeFile:
    """A random-access file for pyarrow readers: memory-mapped when local (no copy), pyarrow.fs elsewhere."""
    if not is_remote(uri):
        return pa.memory_map(str(uri).removeprefix("file://"))
    filesystem, path = resolve(uri)
    return filesystem.open_input_file(path)


def read_bytes(uri: str) -> bytes:
    with open_uri(uri, "rb") as fh:
        return fh.read()


def write_bytes(uri: str, data: bytes) -> None:
    filesystem, path = resolve(uri)
    filesystem.create_dir(posixpath.dirname(path) or "/", recursive=True)
    with filesystem.open_output_stream(path) as fh:
        fh.write(data)


def put_file(uri: str, data: bytes, attempt: str) -> None:
    """Write ``data`` under a temporary name unique to ``attempt``, then rename it over ``uri``.

    A reader never sees half a file under the final name, and a retried or speculative task
    replaces the file instead of adding a second one. Object stores have no directories to make.
    """
    filesystem, path = resolve(uri)
    partial = f"{path}.{attempt}.tmp"
    if not is_remote(uri):
        filesystem.create_dir(posixpath.dirname(path), recursive=True)
    with filesystem.open_output_stream(partial) as fh:
        fh.write(data)
    filesystem.move(partial, path)


def file_type(uri: str) -> pafs.FileType:
    filesystem, path = resolve(uri)
    return filesystem.get_file_info(path).type


def exists(uri: str) -> bool:
    return file_type(uri) != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    return file_type(uri) == pafs.FileType.Directory


def listdir(uri: str, pattern: str = "*") -> list[str]:
    """Names (not paths) directly inside directory ``uri`` matching the shell ``pattern``; empty when
    it does not exist."""
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        return []
    names = (info.base_name for info in filesystem.get_file_info(pafs.FileSelector(path)))
    return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))


def delete_dir(uri: str) -> None:
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type == pafs.FileType.Directory:
        filesystem.delete_dir(path)


def download(uri: str, local: str) -> str:
    """Copy file ``uri`` to the local path ``local``, or directory ``uri`` (recursively) into it; returns ``local``."""
    filesystem, path = resolve(uri)
    pafs.copy_files(path, os.path.abspath(local), source_filesystem=filesystem,
                    destination_filesystem=pafs.LocalFileSystem())
    return local


def upload_dir(local: str, uri: str, last: str | None = None) -> None:
    """Copy the local directory into ``uri``; the file named ``last`` (a completion marker) goes last."""
    filesystem, path = resolve(uri)
    filesystem.create_dir(path, recursive=True)
    names = []
    for root, _, files in os.walk(local):
        names += [os.path.relpath(os.path.join(root, f), local) for f in files]
    for name in sorted(names, key=lambda n: n == last):
        target = posixpath.join(path, *name.split(os.sep))
        filesystem.create_dir(posixpath.dirname(target), recursive=True)
        pafs.copy_files(os.path.join(local, name), target, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=filesystem)
