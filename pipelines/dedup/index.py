"""The index of a dedup run: what a later batch needs to be deduplicated against it.

Layout of ``INDEX/`` (published atomically, ``_SUCCESS`` last, like every output):

* ``index.json`` — ``format``, the ``settings`` a later run must share (:data:`MATCHING`: a
  signature or band key means nothing under other permutations, shingles or banding), and
  one entry per indexed run: its ``id``, its ``output`` and ``data`` (qualified paths), its
  ``text_column``, ``input`` and document count, and ``segment`` (``runs/ID``, relative).
* ``runs/ID/docs/`` — ``INDEX_DOCS``, one row per document of the run, removed ones included:
  its ``survivor`` (itself when kept), exact-copy hash, and for the documents that took part
  in LSH (one per exact-copy group, with shingles) their band keys and signature. A removed
  document stays findable: a new document near it is linked to it, and so to its survivor.
* ``runs/ID/texts/`` — ``INDEX_TEXTS``: the texts of the run's *removed* LSH documents. Kept
  texts are not copied: the run's ``data/`` holds them. Both are read only for the exact
  Jaccard of uncertain pairs, and only for the runs those pairs involve.

A later run reads the band keys and the exact hashes, and the signature column filtered to its
candidates as it is read (``pipelines.dedup.against``); never the old input. ``--update-index`` copies the segments of
the ``--against`` indexes (files, not rows) beside the new one; ``--save-index`` writes the
new one alone, and several indexes can be passed to ``--against`` together. A run whose
``output`` is this run's own is an earlier attempt at the same batch: it is neither matched
against nor carried over, so rerunning a batch replaces its segment.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.config import DedupConfig
from pipelines.errors import InputError, UsageError
from pipelines.io import uri
from pipelines.io.paths import anchor, is_local, local_path
from pipelines.io.publish import SUCCESS, OutputDir, OutputExists
from pipelines.io.hadoop import HadoopFs
from schemas.enforce import conform
from schemas.dedup import DOC_ID, INDEX_DOCS, INDEX_TEXTS
from udfs.signature_format import SIGNATURE_VERSION

FORMAT = 1
KIND = "corpus-prep minhash index"
MANIFEST = "index.json"
# What must be equal for signatures and band keys of two runs to be comparable.
MATCHING = ("num_perm", "seed", "ngram", "char_ngrams", "bands", "rows", "signature_version")


def index_settings(cfg: DedupConfig, bands: int, rows: int) -> dict:
    m = cfg.minhash
    return {"num_perm": m.num_perm, "seed": m.seed, "ngram": m.ngram, "char_ngrams": m.char_ngrams,
            "bands": bands, "rows": rows, "signature_version": SIGNATURE_VERSION}


@dataclass(frozen=True)
class IndexedRun:
    """One run of an index, as its manifest records it; ``segment`` resolved to a full path."""

    id: str
    output: str
    data: str
    text_column: str
    input: str
    documents: int
    segment: str

    def entry(self) -> dict:
        """The manifest entry, ``segment`` relative to the index holding it."""
        return {**asdict(self), "segment": f"runs/{self.id}"}


def _driver_path(path: str) -> str:
    return local_path(path) if is_local(path) else path


def read_index(path: str) -> tuple[dict, list[IndexedRun]]:
    """``(settings, runs)`` of a published index; :class:`InputError` for anything else."""
    if not uri.exists(uri.join(_driver_path(path), SUCCESS)):
        raise InputError(f"--against {path!r} is not a published index (no {SUCCESS}; missing, or its "
                         "writing did not finish)")
    try:
        manifest = json.loads(uri.read_bytes(uri.join(_driver_path(path), MANIFEST)))
    except (OSError, ValueError) as err:
        raise InputError(f"--against {path!r}: {MANIFEST} is unreadable ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise InputError(f"--against {path!r} is not a corpus-prep index ({MANIFEST} has no kind {KIND!r})")
    if manifest.get("format") != FORMAT:
        raise InputError(f"--against {path!r} has index format {manifest.get('format')!r}; this version reads "
                         f"format {FORMAT}")
    root = path.rstrip("/")
    runs = [IndexedRun(**{**run, "segment": f"{root}/{run['segment']}"}) for run in manifest["runs"]]
    return manifest["settings"], runs


def read_indexes(cfg: DedupConfig, bands: int, rows: int) -> list[IndexedRun]:
    """The runs of every ``--against`` index, in order, each once; before Spark starts.

    Refuses (one line, exit 2) an index built with other :data:`MATCHING` settings than this run
    (so several indexes must agree with each other too), index directories overlapping the input
    or the output, and (local paths) an index to write that exists and may not be replaced.
    """
    for flag, paths in (("--against", cfg.index.against), ("--save-index", [cfg.index.save]),
                        ("--update-index", [cfg.index.update])):
        for path in filter(None, paths):
            _check_apart(flag, path, cfg.input.path, cfg.output)
    for path, replace in _targets(cfg):
        if not replace and is_local(path) and uri.exists(local_path(path)):
            raise OutputExists.at(path)
    wanted = index_settings(cfg, bands, rows)
    runs: dict[str, IndexedRun] = {}
    for path in cfg.index.against:
        settings, found = read_index(path)
        differ = [k for k in MATCHING if settings.get(k) != wanted[k]]
        if differ:
            theirs = ", ".join(f"{k}={settings.get(k)}" for k in differ)
            ours = ", ".join(f"{k}={wanted[k]}" for k in differ)
            raise UsageError(f"--against {path!r} was built with {theirs}; this run uses {ours}: signatures are "
                             "only comparable under the same settings (rerun with the index's)")
        for run in found:
            runs.setdefault(run.id, run)  # the same run reached through two indexes counts once
    return list(runs.values())


def _check_apart(flag: str, path: str, *others: str) -> None:
    """An index directory is neither the input or the output, nor inside or around them."""
    root, where = anchor(path)
    for other in others:
        other_root, other_where = anchor(other)
        if root == other_root and (where == other_where or where in other_where.parents
                                   or other_where in where.parents):
            raise UsageError(f"{flag} {path!r} overlaps {other!r}: keep indexes apart from inputs and outputs")


def earlier_runs(runs: list[IndexedRun], fs: HadoopFs, output: str) -> list[IndexedRun]:
    """The indexed runs a run into ``output`` matches against: all but an earlier attempt at that
    same output, which the run replaces."""
    here = fs.qualified(output) if runs else None
    return [run for run in runs if run.output != here]


def segment_tables(sigs: DataFrame, lsh_input: DataFrame, duplicates: DataFrame, documents: DataFrame,
                   text_column: str, indexed: DataFrame | None) -> tuple[DataFrame, DataFrame]:
    """``(INDEX_DOCS, INDEX_TEXTS)`` of this run's documents.

    ``lsh_input`` is the ``SIGNATURES`` rows that took part in LSH; ``indexed`` the ids already
    in the ``--against`` indexes (a document seen before is not indexed twice).
    """
    removed = duplicates.select(DOC_ID, F.col("cluster_id"))
    lsh = lsh_input.select(DOC_ID, "band_keys", "signature")
    docs = (sigs.select(DOC_ID, "exact_hash_hi", "exact_hash_lo").join(removed, DOC_ID, "left")
            .join(lsh, DOC_ID, "left").withColumn("survivor", F.coalesce("cluster_id", DOC_ID)))
    if indexed is not None:
        docs = docs.join(indexed, DOC_ID, "left_anti")
    texts = (documents.select(DOC_ID, F.col(f"`{text_column}`").alias("text"))
             .join(removed.join(lsh.select(DOC_ID), DOC_ID, "left_semi").select(DOC_ID), DOC_ID, "left_semi"))
    return conform(docs, INDEX_DOCS, "index docs"), conform(texts, INDEX_TEXTS, "index texts")


class IndexWriter:
    """One index directory: staged beside its final place during the run, published after the run's
    own output (whose ``data/`` it points to)."""

    def __init__(self, spark: SparkSession, path: str, overwrite: bool, run_key: str, settings: dict,
                 earlier: list[IndexedRun], threshold: float) -> None:
        self.spark = spark
        self.out = OutputDir(spark, path, overwrite, run_key=run_key)
        self.settings, self.earlier, self.threshold = settings, earlier, threshold

    def write(self, docs: DataFrame, texts: DataFrame, run: dict) -> IndexedRun:
        """Copy the earlier segments, write this run's, then the manifest: everything but ``_SUCCESS``."""
        for old in self.earlier:
            self.out.copy_in(old.segment, f"runs/{old.id}")
        new = IndexedRun(id=uuid.uuid4().hex, segment="", documents=0, **run)
        segment = self.out.path("runs", new.id)
        docs.write.parquet(f"{segment}/docs")
        texts.write.parquet(f"{segment}/texts")
        count = self.spark.read.schema(INDEX_DOCS).parquet(f"{segment}/docs").count()
        new = IndexedRun(**{**asdict(new), "documents": count, "segment": segment})
        manifest = {"kind": KIND, "format": FORMAT, "settings": self.settings, "threshold": self.threshold,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "documents": sum(r.documents for r in [*self.earlier, new]),
                    "runs": [r.entry() for r in [*self.earlier, new]]}
        self.out.write_text(MANIFEST, json.dumps(manifest, indent=2) + "\n")
        return new

    def publish(self) -> str:
        return self.out.publish()

    def abandon(self) -> None:
        self.out.abandon()


def index_writers(spark: SparkSession, cfg: DedupConfig, run_key: str, settings: dict,
                  earlier: list[IndexedRun]) -> list[IndexWriter]:
    """``--save-index`` (this run alone) and ``--update-index`` (the earlier runs and this one)."""
    return [IndexWriter(spark, path, replace, run_key, settings, earlier if path == cfg.index.update else [],
                        cfg.lsh.threshold) for path, replace in _targets(cfg)]


def _targets(cfg: DedupConfig) -> list[tuple[str, bool]]:
    """``(path, may replace)`` of the indexes this run writes: updating an ``--against`` index
    replaces it, as its owner asked; any other existing directory needs ``--overwrite``."""
    against = {path.rstrip("/") for path in cfg.index.against}
    return [(path, cfg.overwrite or (path == cfg.index.update and path.rstrip("/") in against))
            for path in (cfg.index.save, cfg.index.update) if path]
