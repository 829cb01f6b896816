"""Dedup quality against exact ground truth: this job (verified and not) vs datasketch.

    python benchmarks/dedup_quality.py --families 4000 --copies 3 --out /tmp/dedup-quality

Builds a synthetic corpus with planted near duplicates (``benchmarks/synthetic_corpus.py``),
computes the true duplicate pairs by exact Jaccard of word 5-gram sets, and reports for each
method: pair recall (true pairs left in one cluster), distinct documents lost (families with
no survivor), false merges (removed documents whose survivor is another family) and seconds.
The reference is datasketch's ``MinHashLSH`` with the same shingles, permutations and threshold,
clustered with union-find and keeping the smallest id, as single-machine scripts do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from benchmarks.synthetic_corpus import SyntheticCorpus, generate, word_shingles  # noqa: E402
from pipelines.config import DedupConfig, InputConfig, LshConfig, SparkConfig  # noqa: E402
from pipelines.dedup.pipeline import run_dedup  # noqa: E402
from pipelines.spark_session import get_spark  # noqa: E402


def score(corpus: SyntheticCorpus, cluster: dict[int, int], truth: set) -> dict:
    kept = {i for i in corpus.ids if cluster[i] == i}
    lost = len(set(corpus.family) - {corpus.family[i] for i in kept})
    false_merges = sum(corpus.family[i] != corpus.family[c] for i, c in cluster.items() if c != i)
    found = sum(cluster[a] == cluster[b] for a, b in truth)
    return {"pair_recall": round(found / len(truth), 4), "families_lost": lost,
            "families": len(set(corpus.family)), "false_merges": false_merges, "removed": len(corpus.ids) - len(kept)}


def datasketch_clusters(corpus: SyntheticCorpus, threshold: float, num_perm: int) -> dict[int, int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    parent = {i: i for i in corpus.ids}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for doc, text in zip(corpus.ids, corpus.texts):
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch([" ".join(s).encode() for s in word_shingles(text, 5)])
        for other in lsh.query(m):
            a, b = find(doc), find(other)
            parent[max(a, b)] = min(a, b)
        lsh.insert(doc, m)
    return {i: find(i) for i in corpus.ids}


def job_clusters(spark, corpus_path: str, out: str, verify: bool, threshold: float) -> dict[int, int]:
    shutil.rmtree(out, ignore_errors=True)
    cfg = DedupConfig(input=InputConfig(path=corpus_path, id_column="id"), output=out,
                      lsh=LshConfig(threshold=threshold, verify=verify))
    run_dedup(cfg, spark=spark)
    removed = pq.read_table(os.path.join(out, "duplicates"), columns=["doc_id", "cluster_id"]).to_pydict()
    cluster = dict(zip(removed["doc_id"], removed["cluster_id"]))
    ids = pq.read_table(os.path.join(out, "data"), columns=["doc_id"]).column(0).to_pylist()
    cluster.update({i: i for i in ids})
    return cluster


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", type=int, default=4000)
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/dedup-quality")
    args = p.parse_args()
    corpus = generate(n_families=args.families, copies=args.copies, short_docs=args.families // 4,
                      exact_families=args.families // 10, boilerplate_families=args.families // 10, seed=args.seed)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "corpus.parquet")
    pq.write_table(pa.table({"id": corpus.ids, "content": corpus.texts}), path)
    truth = corpus.true_pairs(args.threshold)
    print(json.dumps({"documents": len(corpus.ids), "true_pairs": len(truth)}))
    spark = get_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR"))
    for name, run in [
        ("corpus-prep (verified)", lambda: job_clusters(spark, path, os.path.join(args.out, "v"), True, args.threshold)),
        ("corpus-prep --no-verify", lambda: job_clusters(spark, path, os.path.join(args.out, "nv"), False, args.threshold)),
        ("datasketch MinHashLSH", lambda: datasketch_clusters(corpus, args.threshold, 256)),
    ]:
        start = time.perf_counter()
        cluster = run()
        print(json.dumps({"method": name, **score(corpus, cluster, truth),
                          "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
