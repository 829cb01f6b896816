"""Small file operations through Hadoop's FileSystem API, so the same code serves local, HDFS and ``gs://`` paths."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    modified: int  # milliseconds since the epoch


class Fs:
    def __init__(self, spark: SparkSession) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _resolve(self, path: str):
        p = self._jvm.org.apache.hadoop.fs.Path(path)
        return p, p.getFileSystem(self._conf)

    def qualified(self, path: str) -> str:
        """``path`` in full as Hadoop names it (``file:/abs/dir``, ``gs://bucket/dir``)."""
        p, fs = self._resolve(path)
        return str(fs.makeQualified(p).toString())

    def exists(self, path: str) -> bool:
        p, fs = self._resolve(path)
        return bool(fs.exists(p))

    def read_text(self, path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        p, fs = self._resolve(path)
        if not fs.exists(p):
            return None
        stream = fs.open(p)
        try:
            data = self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
        finally:
            stream.close()
        return bytes(data).decode("utf-8")

    def write_bytes(self, path: str, data: bytes) -> None:
        p, fs = self._resolve(path)
        stream = fs.create(p, True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def files(self, pattern: str) -> list[FileEntry]:
        """Every data file under a path or glob (recursively), sorted; names starting with ``_`` or ``.`` skipped."""
        p, fs = self._resolve(pattern)
        statuses = fs.globStatus(p) or []
        out = []
        for status in statuses:
            if status.isDirectory():
                it = fs.listFiles(status.getPath(), True)
                while it.hasNext():
                    out.append(it.next())
            else:
                out.append(status)
        entries = [FileEntry(str(s.getPath().toString()), int(s.getLen()), int(s.getModificationTime()))
                   for s in out if not s.getPath().getName().startswith(("_", "."))]
        return sorted(entries, key=lambda e: e.path)
