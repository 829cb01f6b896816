"""The input and the output as paths: checked before Spark starts, so that no job can destroy its input.

Paths without a scheme and ``file:`` URIs are the driver's local files: they are resolved here
(relative paths, ``..``, trailing slashes, symlinks) and listed in Python. Other schemes
(``gs://``, ``hdfs://``) are compared as written, normalised, and listed through Hadoop's
FileSystem once Spark runs (:func:`input_files` with a session).

The output and the input must not overlap. An output that is the input, or a directory holding
it, would be deleted and replaced with ``--overwrite`` (and ``duplicates/`` keeps only ids, so
removed texts would be gone for good); an output inside the input directory would be read as
input by the next run. A glob input counts as its fixed leading directory (``/data`` for
``/data/2024-*/*.jsonl``), since that is where its matches live.
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
from pathlib import PurePosixPath

from pipelines.errors import InputError, UsageError
from pipelines.io.publish import OutputExists
from pipelines.io.hadoop import HadoopFs, visible

GLOB_CHARS = frozenset("*?[]{}\\")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)


def _split(path: str) -> tuple[str, str]:
    """``(scheme://authority or "", path)``, a ``file:`` URI reduced to its local path."""
    match = _SCHEME.match(path)
    if not match or len(match.group(1)) == 1:  # no scheme (a one-letter "scheme" would be a drive)
        return "", path
    scheme, rest = match.group(1).lower(), match.group(2)
    if rest.startswith("//"):
        authority, _, rest = rest[2:].partition("/")
        rest = "/" + rest
    else:
        authority = ""
    if scheme == "file" and authority in ("", "localhost"):
        return "", rest
    return f"{scheme}://{authority}", rest


def is_local(path: str) -> bool:
    return _split(path)[0] == ""


def local_path(path: str) -> str:
    """The local filesystem path of a local ``path`` (``file:`` stripped)."""
    return _split(path)[1]


def _fixed_part(path: str) -> str:
    """The leading components of ``path`` without glob characters (``path`` itself if it has none)."""
    parts = path.split("/")
    for k, part in enumerate(parts):
        if GLOB_CHARS & set(part):
            return "/".join(parts[:k]) or ("/" if path.startswith("/") else ".")
    return path


def anchor(path: str) -> tuple[str, PurePosixPath]:
    """Where ``path`` (or its glob's fixed directory) lives: ``(filesystem, absolute path)``, comparable."""
    root, rest = _split(path)
    fixed = _fixed_part(rest)
    if root:
        return root, PurePosixPath(posixpath.normpath("/" + fixed.lstrip("/")))
    return "", PurePosixPath(os.path.realpath(os.path.abspath(fixed)))


def check_apart(input_path: str, output: str) -> None:
    """Refuse an output that is, holds or sits inside the input (see the module docstring)."""
    (src_root, src), (dst_root, dst) = anchor(input_path), anchor(output)
    if src_root != dst_root:
        return
    if dst == src or dst in src.parents:
        raise UsageError(f"--output {output!r} is the input {input_path!r} or a directory holding it; "
                         "replacing it would delete the input: choose an output outside it")
    if src in dst.parents:
        raise UsageError(f"--output {output!r} is inside the input {input_path!r}; the output would "
                         "become part of the input: choose an output outside it")


def _local_files(path: str) -> list[str] | None:
    """Data files of a local path, or None for a glob Python cannot expand as Hadoop would."""
    if GLOB_CHARS & set(path):
        if set("{}\\") & set(path) or "[^" in path:  # Hadoop-only glob syntax: left to Hadoop
            return None
        matches = sorted(glob.glob(path))
    else:
        matches = [path] if os.path.exists(path) else []
    files = []
    for match in matches:
        if not os.path.isdir(match):
            files.append(match)
            continue
        for folder, dirs, names in os.walk(match):
            dirs[:] = sorted(d for d in dirs if visible(d))
            files.extend(os.path.join(folder, n) for n in sorted(names) if visible(n))
    return files


def input_files(path: str, spark=None) -> list[str] | None:
    """The data files ``path`` names (a file, a directory read recursively, a glob), as Spark reads them.

    Raises :class:`InputError` when there are none, naming the case: a missing path, a glob
    matching nothing, a directory without data files. Local paths are listed without Spark;
    others need ``spark`` and return None without it (checked once Spark runs).
    """
    if is_local(path):
        files = _local_files(local_path(path))
        if files is None:
            return None
        exists = bool(GLOB_CHARS & set(path)) or os.path.exists(local_path(path))
    elif spark is None:
        return None
    else:
        fs = HadoopFs(spark)
        files = [f.path for f in fs.files(path)]
        exists = bool(GLOB_CHARS & set(path)) or fs.exists(path)
    if files:
        return files
    if GLOB_CHARS & set(path):
        raise InputError(f"no input files match {path!r}")
    if not exists:
        raise InputError(f"input path {path!r} does not exist")
    raise InputError(f"no input files in {path!r} (names starting with '_' or '.' are not read)")


def check_paths(input_path: str, output: str, overwrite: bool, list_input: bool = True) -> None:
    """Every path problem that needs no Spark, before it starts: the input's files, overlap, an existing output."""
    if not output.strip():
        raise UsageError("--output is empty")
    if list_input:
        input_files(input_path)
    check_apart(input_path, output)
    if not overwrite and is_local(output) and os.path.exists(local_path(output)):
        raise OutputExists.at(output)
