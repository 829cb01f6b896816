"""What deduplicating a new batch against an index costs, next to deduplicating it alone.

    python benchmarks/incremental_cost.py --corpus /work/data/real-small.parquet --new-releases 2 --rounds 3
    python benchmarks/incremental_cost.py --synthetic 22000 --rounds 3

The corpus is split into an old part ``A`` (about 10× the new batch) and a new batch ``B``:
a real corpus of ``benchmarks/real_corpus.py`` by release — ``B`` holds the newest
``--new-releases`` releases of every package, so it is "new releases against old ones" —,
or a synthetic corpus (``benchmarks/synthetic_corpus.py``) at random, one document in 11
to ``B``. ``dedup(A --save-index)`` runs once; then, in one process and one Spark session
(``local[2]``, default settings, ids from ``id``), after one warm-up run, ``dedup(B --against
index)`` and ``dedup(B)`` alternate (``alone, against, against, alone, …``), each from scratch.
The old input is moved away once the index is built: the runs against the index cannot read
it. Reported: wall and stage seconds of every run, the median of each and their ratio, the
sizes of the index's parts and of the old texts, how many indexed texts exact verification
needed, and the oracle: the ``B`` documents kept against the index must be those that one run
over ``A ∪ B`` keeps with every ``A`` document first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.synthetic_corpus import generate  # noqa: E402
from pipelines.config import DedupConfig, IndexConfig, InputConfig, KeepPolicy, SparkConfig  # noqa: E402
from pipelines.dedup.pipeline import run_dedup  # noqa: E402
from pipelines.spark_session import get_spark  # noqa: E402


def split_by_release(path: str, new_releases: int, packages: list[str] | None = None) -> pa.Table:
    """The corpus (of ``packages`` only, if given) with ``batch`` = 0 for each package's newest
    ``new_releases`` releases, else 1."""
    from packaging.version import Version

    table = pq.read_table(path, columns=["id", "package", "version", "content"])
    if packages:
        table = table.filter(pc.is_in(table["package"], pa.array(packages)))
    newest = set()
    for package in pc.unique(table["package"]).to_pylist():
        rows = table.filter(pc.equal(table["package"], package))
        versions = sorted(set(rows["version"].to_pylist()), key=Version)
        newest |= {(package, v) for v in versions[-new_releases:]}
    batch = [0 if key in newest else 1 for key in zip(table["package"].to_pylist(), table["version"].to_pylist())]
    return table.select(["id", "content"]).append_column("batch", pa.array(batch, pa.int32()))


def synthetic(documents: int, seed: int = 0) -> pa.Table:
    """A synthetic corpus of about ``documents`` documents (families of 4, version chains of 6),
    one document in 11 to the new batch."""
    corpus = generate(n_families=documents // 8, copies=3, short_docs=documents // 50,
                      version_chains=documents // 12, seed=seed)
    batch = (np.random.default_rng(seed).random(len(corpus.ids)) >= 1 / 11).astype(np.int32)
    return pa.table({"id": pa.array(corpus.ids, pa.int64()), "content": corpus.texts, "batch": batch})


def timed_run(spark, corpus: str, out: str, index: IndexConfig, label: str) -> dict:
    """One run from scratch (no output, no staging to resume from)."""
    shutil.rmtree(out, ignore_errors=True)
    parent = os.path.dirname(out)
    for name in os.listdir(parent):
        if name.startswith(f".{os.path.basename(out)}."):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    cfg = DedupConfig(input=InputConfig(path=corpus, id_column="id"), output=out, keep=KeepPolicy.PRIORITY,
                      keep_priority_column="batch", index=index)
    start = time.perf_counter()
    stats = run_dedup(cfg, spark=spark).stats
    seconds = time.perf_counter() - start
    return {"run": label, "seconds": round(seconds, 1),
            "stages": {k: round(v, 1) for k, v in stats["stage_seconds"].items()}, "kept": stats["kept"], "index_duplicates": stats.get("index_duplicates"), "index": stats.get("index")}


def size_mb(path: str) -> float:
    """Bytes of a file, or of every file under a directory."""
    files = [path] if os.path.isfile(path) else [os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
    return round(sum(map(os.path.getsize, files)) / 1e6, 2)


def column_mb(path: str) -> dict[str, float]:
    """Compressed bytes per column of a Parquet directory."""
    sizes = defaultdict(int)
    for name in os.listdir(path):
        if name.endswith(".parquet"):
            meta = pq.ParquetFile(os.path.join(path, name)).metadata
            for g in range(meta.num_row_groups):
                for c in range(meta.num_columns):
                    column = meta.row_group(g).column(c)
                    sizes[column.path_in_schema.split(".")[0]] += column.total_compressed_size
    return {k: round(v / 1e6, 2) for k, v in sizes.items()}


def kept_ids(out: str) -> set[int]:
    return set(pq.read_table(os.path.join(out, "data"), columns=["doc_id"]).column("doc_id").to_pylist())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="a benchmarks/real_corpus.py Parquet file (id, package, version, content)")
    source.add_argument("--synthetic", type=int, metavar="DOCUMENTS", help="a synthetic corpus of about this size")
    p.add_argument("--new-releases", type=int, default=2, help="with --corpus: releases per package in the new batch")
    p.add_argument("--rounds", type=int, default=3, help="pairs of runs of each kind after the warm-up")
    p.add_argument("--work", default="/tmp/incremental-cost")
    args = p.parse_args()

    table = split_by_release(args.corpus, args.new_releases) if args.corpus else synthetic(args.synthetic)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    paths = {}
    for name, value in (("old", 1), ("new", 0)):
        part = table.filter(pc.equal(table["batch"], value))
        paths[name] = os.path.join(args.work, f"{name}.parquet")
        pq.write_table(part, paths[name])
        print(json.dumps({"part": name, "documents": part.num_rows,
                          "text_mb": round(pc.sum(pc.binary_length(part["content"])).as_py() / 1e6, 1)}), flush=True)
    paths["both"] = os.path.join(args.work, "both.parquet")
    pq.write_table(table, paths["both"])

    spark = get_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR"))
    w = lambda name: os.path.join(args.work, name)  # noqa: E731
    index = w("index")
    print(json.dumps(timed_run(spark, paths["old"], w("out_old"), IndexConfig(save=index), "old --save-index")),
          flush=True)
    manifest = json.load(open(os.path.join(index, "index.json")))
    segment = os.path.join(index, manifest["runs"][0]["segment"])
    print(json.dumps({"index_docs_columns_mb": column_mb(os.path.join(segment, "docs")),
                      "index_texts_mb": size_mb(os.path.join(segment, "texts")),
                      "old_data_mb": size_mb(w("out_old/data")), "old_input_mb": size_mb(paths["old"])}),
          flush=True)
    os.rename(paths["old"], paths["old"] + ".moved")  # from here on, nothing can read the old input

    against = IndexConfig(against=(index,))
    timed_run(spark, paths["new"], w("out_new"), IndexConfig(), "warm-up")
    runs = []
    for k in range(2 * args.rounds):
        alone = k % 4 in (0, 3)
        runs.append(timed_run(spark, paths["new"], w("out_new"), IndexConfig() if alone else against,
                              "alone" if alone else "against"))
        if not alone:
            against_kept = kept_ids(w("out_new"))
        print(json.dumps(runs[-1]), flush=True)
    median = {kind: statistics.median(r["seconds"] for r in runs if r["run"] == kind) for kind in ("alone", "against")}
    print(json.dumps({"median_seconds": median, "against_over_alone": round(median["against"] / median["alone"], 3)}),
          flush=True)

    joint = timed_run(spark, paths["both"], w("out_both"), IndexConfig(), "one run over both, old first")
    new_ids = set(pq.read_table(paths["new"], columns=["id"]).column("id").to_pylist())
    joint_kept = kept_ids(w("out_both")) & new_ids
    print(json.dumps({"joint_seconds": joint["seconds"], "new_kept_against_index": len(against_kept),
                      "new_kept_by_one_run": len(joint_kept), "equal": against_kept == joint_kept,
                      "only_against": sorted(against_kept - joint_kept)[:10],
                      "only_one_run": sorted(joint_kept - against_kept)[:10]}), flush=True)


if __name__ == "__main__":
    main()
