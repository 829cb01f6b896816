"""Dedup quality against exact ground truth: this job vs datasketch.

    python benchmarks/dedup_quality.py --families 4000 --copies 3 --out /tmp/dedup-quality
    python benchmarks/dedup_quality.py --corpus /work/data/real-small.parquet \\
        --truth /work/data/truth-small --out /tmp/dedup-quality-real

**Synthetic mode** builds a corpus with planted near duplicates (``benchmarks/synthetic_corpus.py``)
and reports per method: pair recall (true pairs left in one cluster), distinct documents lost
(families with no survivor), false merges (removed documents whose survivor is another family)
and seconds, for the job with exact verification, the signature estimate alone and none.

**Real-corpus mode** (``--corpus``, a Parquet file with ``id`` and ``content``, e.g. from
``benchmarks/real_corpus.py``) has no planted labels, so it judges by exact Jaccard alone
(``benchmarks/exact_truth.py``; computed unless ``--truth DIR`` holds it already). The job runs
with its defaults and ``--id-column id`` (threshold 0.7, 256 permutations, word 5-grams).
Per method:

* ``lost``: true clusters of which no document was kept — unique content deleted, the
  failure a dedup job must not have (count and % of true clusters);
* ``left_in``: kept documents beyond the first of their true cluster — duplicates the job
  missed (count and % of true clusters);
* ``false_links``: links the method acted on whose exact Jaccard is below the threshold: for
  the job, the ``near`` rows of ``duplicates/`` against their ``linked_to``; for datasketch,
  every LSH hit it merged on. With the minimum and a histogram of their exact Jaccard.

The reference in both modes is datasketch's ``MinHashLSH`` with the same shingles, permutations
and threshold, clustered with union-find and keeping the smallest id, as single-machine scripts
do (documents without shingles are left out of it, as the job leaves them unclustered).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from benchmarks import exact_truth  # noqa: E402
from benchmarks.synthetic_corpus import SyntheticCorpus, generate, word_shingles  # noqa: E402
from pipelines.config import DedupConfig, InputConfig, LshConfig, MinHashConfig, SparkConfig  # noqa: E402
from pipelines.dedup.pipeline import run_dedup  # noqa: E402
from pipelines.spark_session import get_spark  # noqa: E402

THRESHOLD, NUM_PERM, NGRAM = 0.7, 256, 5


def score(corpus: SyntheticCorpus, cluster: dict[int, int], truth: set) -> dict:
    kept = {i for i in corpus.ids if cluster[i] == i}
    lost = len(set(corpus.family) - {corpus.family[i] for i in kept})
    false_merges = sum(corpus.family[i] != corpus.family[c] for i, c in cluster.items() if c != i)
    found = sum(cluster[a] == cluster[b] for a, b in truth)
    return {"pair_recall": round(found / len(truth), 4), "families_lost": lost,
            "families": len(set(corpus.family)), "false_merges": false_merges, "removed": len(corpus.ids) - len(kept)}


def datasketch_clusters(ids: list[int], texts: list[str], threshold: float, num_perm: int):
    """``({id: survivor}, [(doc, other) for every LSH hit merged on])``."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    parent = {i: i for i in ids}
    links = []

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for doc, text in zip(ids, texts):
        shingles = word_shingles(text, NGRAM)
        if not shingles:
            continue
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch([" ".join(s).encode() for s in shingles])
        for other in lsh.query(m):
            links.append((doc, other))
            a, b = find(doc), find(other)
            parent[max(a, b)] = min(a, b)
        lsh.insert(doc, m)
    return {i: find(i) for i in ids}, links


def job_clusters(spark, corpus_path: str, out: str, lsh: LshConfig):
    """``({id: survivor}, [(doc_id, linked_to) of every near row])`` of one run of the job."""
    shutil.rmtree(out, ignore_errors=True)
    cfg = DedupConfig(input=InputConfig(path=corpus_path, id_column="id"), output=out,
                      minhash=MinHashConfig(ngram=NGRAM, num_perm=NUM_PERM), lsh=lsh)
    run_dedup(cfg, spark=spark)
    removed = pq.read_table(os.path.join(out, "duplicates"), columns=["doc_id", "cluster_id", "linked_to", "match"])
    cluster = dict(zip(*(removed.column(c).to_pylist() for c in ("doc_id", "cluster_id"))))
    cluster.update({i: i for i in pq.read_table(os.path.join(out, "data"), columns=["doc_id"]).column(0).to_pylist()})
    near = removed.filter(pc.equal(removed.column("match"), "near"))
    return cluster, list(zip(near.column("doc_id").to_pylist(), near.column("linked_to").to_pylist()))


def quality(cluster: dict[int, int], truth: dict[int, int]) -> dict:
    """Kept, lost and left-in counts of one method's ``{id: survivor}`` against the true clusters."""
    kept_per_cluster = collections.Counter(truth[i] for i, c in cluster.items() if c == i)
    n = len(set(truth.values()))
    lost = n - len(kept_per_cluster)
    left_in = sum(k - 1 for k in kept_per_cluster.values())
    return {"kept": sum(kept_per_cluster.values()), "true_clusters": n,
            "lost": lost, "lost_pct": round(100 * lost / n, 2),
            "left_in": left_in, "left_in_pct": round(100 * left_in / n, 2)}


def false_links(links: list[tuple[int, int]], ids: np.ndarray, texts: list[str], threshold: float) -> dict:
    """Links below ``threshold`` by exact Jaccard (shingle sets of only the documents involved)."""
    if not links:
        return {"false_links": 0}
    involved = sorted({d for link in links for d in link})
    position = {doc: k for k, doc in enumerate(involved)}
    row = {doc: k for k, doc in enumerate(ids.tolist())}
    sets = exact_truth.shingle_sets([texts[row[d]] for d in involved], NGRAM, processes=2)
    a, b = (np.array([position[link[s]] for link in links]) for s in (0, 1))
    jac = exact_truth.pair_jaccard(sets, a, b)
    below = jac[jac < threshold]
    edges = np.append(np.arange(0, threshold, 0.1), threshold)
    hist = np.histogram(below, bins=edges)[0]
    return {"links": len(links), "false_links": len(below),
            "false_link_min_jaccard": round(float(below.min()), 4) if len(below) else None,
            "false_link_jaccard_histogram": {f"{lo:.1f}-{hi:.1f}": int(n) for lo, hi, n in zip(edges, edges[1:], hist)}}


def real_mode(args) -> None:
    ids, texts = exact_truth.read_corpus(args.corpus, "id", "content")
    truth_dir = args.truth or os.path.join(args.out, "truth")
    if not os.path.exists(os.path.join(truth_dir, "clusters.parquet")):
        result = exact_truth.compute_truth(ids, texts, args.threshold, NGRAM, processes=2)
        exact_truth.write_truth(result, truth_dir)
        print(json.dumps({"truth": result.summary}))
    table = pq.read_table(os.path.join(truth_dir, "clusters.parquet"))
    truth = dict(zip(table.column("id").to_pylist(), table.column("cluster").to_pylist()))
    if set(truth) != set(ids.tolist()):
        sys.exit(f"error: {truth_dir} is the truth of another corpus (its ids differ from {args.corpus}'s)")
    spark = get_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR"))
    results = []
    for name, run in [
        ("corpus-prep (defaults)", lambda: job_clusters(spark, args.corpus, os.path.join(args.out, "job"),
                                                        LshConfig(threshold=args.threshold))),
        ("datasketch MinHashLSH", lambda: datasketch_clusters(ids.tolist(), texts, args.threshold, NUM_PERM)),
    ]:
        start = time.perf_counter()
        cluster, links = run()
        seconds = round(time.perf_counter() - start, 1)
        results.append({"method": name, **quality(cluster, truth), **false_links(links, ids, texts, args.threshold),
                        "seconds": seconds})
        print(json.dumps(results[-1]))
    with open(os.path.join(args.out, "quality.json"), "w") as f:
        json.dump(results, f, indent=1)


def synthetic_mode(args) -> None:
    from pipelines.config import VerifyMode  # only in versions of the job with exact verification

    corpus = generate(n_families=args.families, copies=args.copies, short_docs=args.families // 4,
                      exact_families=args.families // 10, boilerplate_families=args.families // 10, seed=args.seed)
    path = os.path.join(args.out, "corpus.parquet")
    pq.write_table(pa.table({"id": corpus.ids, "content": corpus.texts}), path)
    truth = corpus.true_pairs(args.threshold)
    print(json.dumps({"documents": len(corpus.ids), "true_pairs": len(truth)}))
    spark = get_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR"))
    methods = {f"corpus-prep --verify {mode.value}": mode for mode in VerifyMode}
    methods["datasketch MinHashLSH"] = None
    for name, mode in methods.items():
        start = time.perf_counter()
        if mode is None:
            cluster = datasketch_clusters(corpus.ids, corpus.texts, args.threshold, NUM_PERM)[0]
        else:
            cluster = job_clusters(spark, path, os.path.join(args.out, mode.value),
                                   LshConfig(threshold=args.threshold, verify=mode))[0]
        print(json.dumps({"method": name, **score(corpus, cluster, truth),
                          "seconds": round(time.perf_counter() - start, 1)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", help="real-corpus mode: Parquet with columns id and content")
    p.add_argument("--truth", help="exact_truth.py output for --corpus (computed and written here if absent)")
    p.add_argument("--families", type=int, default=4000)
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--threshold", type=float, default=THRESHOLD)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/dedup-quality")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    (real_mode if args.corpus else synthetic_mode)(args)


if __name__ == "__main__":
    main()
