"""Atomic publication of an output directory, on the driver's Hadoop file layer (``pipelines.io.hadoop``).

A job writes everything under a staging directory beside the final path
(``.NAME.staging-KEY``), renames the whole directory into place once its own checks pass, and
writes ``_SUCCESS`` into the final directory last. On HDFS or a local disk the rename is atomic;
on ``gs://`` it is a copy of every object followed by a delete, so a marker carried by the copy
could land before the data does. Written last, ``_SUCCESS`` is present only once every file is in
place: a crash at any point leaves an output without it, which every reader here refuses
(``prepare`` stage checks, the pack job reading a dedup output, ``schemas.packed.load_manifest``
and through it the training runtime). When an old output is replaced, its ``_SUCCESS`` is removed
before it is moved aside.

``KEY`` is random unless the caller names the run: a job that passes a fingerprint of its input
and settings finds the staging directory of an earlier crashed run of the same command
(``resumed``); everything there except its ``_work`` checkpoints is cleared, and the
checkpoints are only reused after verification (``pipelines.dedup.checkpoints``). Two runs of
the same command must therefore not run at the same time.
"""

from __future__ import annotations

import uuid

from pyspark.sql import SparkSession

from pipelines.errors import UserError
from pipelines.io.hadoop import HadoopFs

SUCCESS = "_SUCCESS"


class OutputExists(UserError, FileExistsError):
    """The output directory exists and ``--overwrite`` was not given."""

    @classmethod
    def at(cls, path: str) -> "OutputExists":
        return cls(f"output {path!r} already exists; pass --overwrite to replace it")


class OutputDir:
    def __init__(self, spark: SparkSession, final: str, overwrite: bool, run_key: str | None = None) -> None:
        self._fs = HadoopFs(spark)
        self.final = final.rstrip("/")
        if self._fs.exists(self.final) and not overwrite:
            raise OutputExists.at(final)
        self.overwrite = overwrite
        parent, name = self.final.rsplit("/", 1) if "/" in self.final else (".", self.final)
        self._parent, self._name = parent, name
        self.run_id = uuid.uuid4().hex[:12]
        self.staging = f"{parent}/.{name}.staging-{run_key or self.run_id}"
        self.resumed = self.exists(self.staging)
        if self.resumed:
            self._clear_all_but_work()
        self._fs.mkdirs(self.staging)

    def path(self, *parts: str) -> str:
        """A path inside the staging directory."""
        return "/".join([self.staging, *parts])

    def exists(self, path: str) -> bool:
        return self._fs.exists(path)

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file whole or not at all: to a temporary name, then renamed into place."""
        target, partial = self.path(relative), self.path(relative) + ".partial"
        self._fs.write_bytes(partial, data)
        self._fs.delete(target)
        if not self._fs.rename(partial, target):
            raise OSError(f"could not rename {partial} to {target}")

    def write_text(self, relative: str, text: str) -> None:
        self.write_bytes(relative, text.encode("utf-8"))

    def read_text(self, relative: str) -> str | None:
        """A small file inside the staging directory, or ``None`` if it does not exist."""
        return self._fs.read_text(self.path(relative))

    def delete(self, path: str) -> None:
        self._fs.delete(path)

    def copy_in(self, source: str, relative: str) -> None:
        """Copy the file or directory ``source`` (any filesystem) to ``relative`` inside the staging directory."""
        self._fs.copy(source, self.path(relative))

    def publish(self) -> str:
        """Move staging into place (replacing an old output if allowed), then mark success: ``_SUCCESS`` last."""
        self._fs.delete(self.path(SUCCESS))  # only ever written in the final place
        old = None
        if self._fs.exists(self.final):
            if not self.overwrite:
                raise OutputExists(f"output {self.final!r} appeared while the job ran")
            self._fs.delete(f"{self.final}/{SUCCESS}")  # incomplete from here on
            old = f"{self._parent}/.{self._name}.replaced-{self.run_id}"
            if not self._fs.rename(self.final, old):
                raise OSError(f"could not move the old output {self.final!r} aside")
        if not self._fs.rename(self.staging, self.final):
            raise OSError(f"could not rename {self.staging!r} to {self.final!r}")
        self._mark_success()
        if old is not None:
            self._fs.delete(old)
        return self.final

    def _mark_success(self) -> None:
        self._fs.write_bytes(f"{self.final}/{SUCCESS}", b"")

    def abandon(self, keep_work: bool = False) -> None:
        """Remove the staging directory after a failure (all but ``_work`` if ``keep_work``)."""
        if not keep_work or not self.exists(self.path("_work")):
            self._fs.delete(self.staging)
        else:
            self._clear_all_but_work()

    def _clear_all_but_work(self) -> None:
        for child in self._fs.children(self.staging):
            if child.rstrip("/").rsplit("/", 1)[-1] != "_work":
                self._fs.delete(child)
