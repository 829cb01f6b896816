"""Publication on object stores: ``_SUCCESS`` is written last, so a crash mid-publication leaves an output every reader refuses.

A rename on ``gs://`` is a copy of every object followed by a delete. ``CopyingFs`` gives the
Hadoop FileSystem that behaviour (and can crash after any number of copied files), so the
tests see what a reader on GCS would see at each point.
"""

from __future__ import annotations

import json
import os
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import InputConfig, PackConfig, TokenizerConfig
from pipelines.io.hadoop import HadoopFs
from pipelines.io.publish import OutputDir
from pipelines.io.readers import InputError
from pipelines.pack.pipeline import run_pack
from pipelines.prepare import stages as st
from schemas.packed import ManifestError, load_manifest


class Crash(RuntimeError):
    """The driver died here."""


class CopyingFs(HadoopFs):
    """Hadoop file access whose directory rename copies file by file, then deletes the source (as on GCS)."""

    def __init__(self, spark, crash_after_files: int | None = None) -> None:
        super().__init__(spark)
        self.crash_after_files = crash_after_files
        self.calls: list[tuple[str, str]] = []

    def write_bytes(self, path, data):
        self.calls.append(("create", posixpath.basename(path)))
        super().write_bytes(path, data)

    def delete(self, path):
        self.calls.append(("delete", posixpath.basename(path)))
        super().delete(path)

    def rename(self, src, dst):
        self.calls.append(("rename", posixpath.basename(src)))
        if not self.is_dir(src):
            return super().rename(src, dst)
        src_path, fs = self._resolve(src)
        dst_path = self._jvm.org.apache.hadoop.fs.Path(dst)
        files, listing = [], fs.listFiles(src_path, True)
        while listing.hasNext():
            files.append(listing.next().getPath().toString())
        root = fs.getFileStatus(src_path).getPath().toString()  # qualified, as the listing is
        for count, name in enumerate([*sorted(files), None]):  # "_SUCCESS" sorts before "data/", "manifest.json"
            if count == self.crash_after_files:
                raise Crash(f"after copying {count} of {len(files)} files")
            if name is not None:
                target = self._jvm.org.apache.hadoop.fs.Path(dst_path.toString() + name[len(root):])
                self._jvm.org.apache.hadoop.fs.FileUtil.copy(fs, self._jvm.org.apache.hadoop.fs.Path(name),
                                                             fs, target, False, self._conf)
        return bool(fs.delete(src_path, True))


def _listing(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if not n.startswith("."))  # no checksum files


def _staged(spark, final, overwrite=False, files=None) -> OutputDir:
    out = OutputDir(spark, str(final), overwrite)
    for name, text in (files or {"stats.json": "{}", "data/part-0": "x", "manifest.json": "{}"}).items():
        out.write_text(name, text)
    return out


def test_success_is_written_last_after_every_file_is_in_place(spark, tmp_path):
    final = tmp_path / "out"
    out = _staged(spark, final)
    out._fs = fs = CopyingFs(spark)
    out.publish()
    assert fs.calls.index(("rename", os.path.basename(out.staging))) < fs.calls.index(("create", "_SUCCESS"))
    assert fs.calls[-1] == ("create", "_SUCCESS")
    assert _listing(final) == ["_SUCCESS", "data", "manifest.json", "stats.json"]


def test_replacing_an_output_unmarks_it_before_moving_it_aside(spark, tmp_path):
    final = tmp_path / "out"
    _staged(spark, final).publish()
    out = _staged(spark, final, overwrite=True, files={"stats.json": '{"second": 1}'})
    out._fs = fs = CopyingFs(spark)
    out.publish()
    unmark, move_old = fs.calls.index(("delete", "_SUCCESS")), fs.calls.index(("rename", "out"))
    assert unmark < move_old < fs.calls.index(("create", "_SUCCESS"))
    assert (final / "stats.json").read_text() == '{"second": 1}' and (final / "_SUCCESS").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


@pytest.mark.parametrize("copied", [0, 1, 2, 3, None])  # a crash after 0..3 of the 3 files, or before the marker
def test_a_crash_anywhere_in_publication_leaves_no_success(spark, tmp_path, copied):
    final = tmp_path / "out"
    out = _staged(spark, final)
    out._fs = CopyingFs(spark, crash_after_files=copied)
    if copied is None:  # the copy completes; the driver dies before the marker
        out._mark_success = lambda: (_ for _ in ()).throw(Crash("before _SUCCESS"))
    with pytest.raises(Crash):
        out.publish()
    assert not (final / "_SUCCESS").exists()
    if final.exists():  # partially or wholly copied, never marked: every reader refuses it
        fs = HadoopFs(spark)
        with pytest.raises(st.StageInvalid, match="no _SUCCESS"):
            st.verify_dedup(spark, fs, str(final))
        with pytest.raises(st.StageInvalid, match="no _SUCCESS"):
            st.verify_pack(fs, str(final))
        with pytest.raises(ManifestError, match="no _SUCCESS"):
            load_manifest(str(final))


def test_pack_job_crash_after_copy_is_incomplete_for_readers(spark, tmp_path, monkeypatch):
    """The pack job's own output: all shards and the manifest in place, no marker, and nobody reads it."""
    from runtime.data.shards import PackedManifest

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"content": [f"document {i} " + "word " * (i % 17) for i in range(60)]}),
                   corpus / "part-0.parquet")
    monkeypatch.setattr(OutputDir, "_mark_success", lambda self: (_ for _ in ()).throw(Crash("before _SUCCESS")))
    final = tmp_path / "packed"
    cfg = PackConfig(input=InputConfig(path=str(corpus)), output=str(final), seq_len=32, num_shards=2,
                     tokenizer=TokenizerConfig(train=True, vocab_size=300, min_frequency=1))
    with pytest.raises(Crash):
        run_pack(cfg, spark=spark)
    manifest = json.loads((final / "manifest.json").read_text())
    assert all((final / e["file"]).exists() for entries in manifest["shards"].values() for e in entries)
    assert not (final / "_SUCCESS").exists()
    with pytest.raises(ManifestError, match="incomplete"):
        load_manifest(str(final))
    with pytest.raises(ManifestError, match="incomplete"):
        PackedManifest.load(str(final))  # the training runtime
    with pytest.raises(st.StageInvalid, match="no _SUCCESS"):
        st.verify_pack(HadoopFs(spark), str(final))  # prepare reruns the stage


def test_pack_refuses_a_dedup_output_without_success(spark, tmp_path):
    dedup = tmp_path / "dedup"
    (dedup / "data").mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": pa.array([1], pa.int64()), "content": ["text"]}), dedup / "data" / "p.parquet")
    (dedup / "stats.json").write_text("{}")
    cfg = PackConfig(input=InputConfig(path=str(dedup)), output=str(tmp_path / "packed"), seq_len=32,
                     tokenizer=TokenizerConfig(train=True, vocab_size=300))
    with pytest.raises(InputError, match="without _SUCCESS"):
        run_pack(cfg, spark=spark)
    assert not (tmp_path / "packed").exists()
