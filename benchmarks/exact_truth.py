"""Exact near-duplicate ground truth, computed independently of the dedup job's code.

    python benchmarks/exact_truth.py --corpus /work/data/real-small.parquet --out /tmp/truth-small

Definition (the job's, see ``udfs/minhash.py``): a document's shingles are the word n-grams
of ``synthetic_corpus.word_shingles`` — tokens are the ``\\w+`` runs (Python ``re``, Unicode)
of ``text.lower()``; a document with ``0 < k < n`` tokens has one shingle of all its tokens;
one with no tokens has none and is its own cluster. Two documents are duplicates when the
exact Jaccard similarity of their shingle sets reaches the threshold; true clusters are the
connected components of that relation, labelled by their smallest id.

How, without comparing all pairs:

1. **Shingle hashes.** Each shingle ``(t1, ..., tk)`` becomes the 64-bit BLAKE2b digest of
   ``"\\x1f".join(tokens)`` (tokens never contain ``\\x1f``, so the string is injective); a
   document is a sorted array of distinct hashes. Jaccard is computed on these hashes, not on
   tuples: two distinct shingles collide with probability 2**-64, so even 10**9 distinct
   shingles give an expected 0.03 collisions in the whole corpus, and one collision moves one
   pair's Jaccard by at most ``1/|A ∪ B|``. This is the slow, pure-Python step (BENCHMARKS.md,
   "Real corpus and exact truth"); the CLI runs it in 2 processes.
2. **Identical sets** are grouped first (exact byte comparison of the arrays): their members
   are duplicates of each other (J = 1) and only the smallest id of each group goes on, so a
   file copied into hundreds of releases costs one representative, not ``copies**2`` pairs.
3. **Candidates** among the representatives: an own MinHash, unrelated to the job's (hash
   ``fmix64(x ^ s_i)``, murmur3's 64-bit finaliser over the BLAKE2b shingle hash XORed with
   256 seeds from ``numpy.random.default_rng(20261201)``), banded as b = 64 bands of r = 4
   rows. A pair with Jaccard J shares a band with probability ``1 - (1 - J**4)**64``: it is
   missed with probability 2.3e-8 at J = 0.7, 1.8e-12 at 0.8, 1.4e-4 at 0.6 and 2.1e-3 at
   0.55 (the floor of ``pairs.parquet``, whose pairs just below 0.6 are therefore complete
   only to about 99.8 %). Every pair inside a band bucket is a candidate (no star shortcut:
   two members of a bucket can be similar while the bucket's head is not similar to them).
4. **Exact Jaccard** of every distinct candidate pair (a merge of the two sorted arrays), keep
   pairs at or above the threshold, then ``scipy.sparse.csgraph.connected_components`` over
   those pairs plus the identical-set groups.

Outputs (CLI): ``DIR/clusters.parquet`` (``id``, ``cluster`` = smallest id of its true
cluster) and ``DIR/pairs.parquet`` (``a < b``, ``jaccard``) for every candidate pair with
J >= threshold - 0.15 between representatives, plus each identical-set member against its
group's smallest id (J = 1; a star, not all pairs). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from numba import njit  # noqa: E402
from scipy.sparse import coo_matrix  # noqa: E402
from scipy.sparse.csgraph import connected_components  # noqa: E402

from benchmarks.synthetic_corpus import word_shingles  # noqa: E402  (the shingle definition)

BANDS, ROWS = 64, 4
MINHASH_SEED = 20261201
PAIR_MARGIN = 0.15


def shingle_hashes(text: str, ngram: int = 5) -> np.ndarray:
    """Sorted distinct 64-bit hashes of the text's shingles (empty for a text with no tokens)."""
    digests = b"".join(hashlib.blake2b("\x1f".join(s).encode(), digest_size=8).digest()
                       for s in word_shingles(text, ngram))
    return np.unique(np.frombuffer(digests, dtype="<u8").astype(np.uint64))


class ShingleSets:
    """Shingle-hash sets of many documents in one array: ``sets[i]`` is document i's."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def _hash_chunk(args: tuple[list[str], int]) -> tuple[np.ndarray, np.ndarray]:
    texts, ngram = args
    sets = [shingle_hashes(t, ngram) for t in texts]
    return (np.concatenate(sets) if sets else np.empty(0, np.uint64)), np.array([len(s) for s in sets], np.int64)


def shingle_sets(texts: list[str], ngram: int = 5, processes: int = 1, chunk: int = 500) -> ShingleSets:
    """``ShingleSets`` of ``texts``, hashed in ``processes`` workers. The workers are spawned
    (forking a process that hosts a py4j gateway is unsafe), so with ``processes > 1`` the
    calling script needs the ``if __name__ == "__main__":`` guard."""
    jobs = [(texts[i:i + chunk], ngram) for i in range(0, len(texts), chunk)]
    if processes > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            parts = pool.map(_hash_chunk, jobs, chunksize=1)
    else:
        parts = [_hash_chunk(j) for j in jobs]
    values = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.uint64)
    sizes = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    return ShingleSets(values, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two sorted distinct hash arrays; 0 if either is empty (a document
    without shingles is never anyone's duplicate, unlike ``synthetic_corpus.jaccard``'s 1.0)."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


@njit(cache=True)
def _fmix64(x):
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


@njit(cache=True)
def _minhash(values, offsets, docs, seeds):
    out = np.full((len(docs), len(seeds)), np.uint64(0xFFFFFFFFFFFFFFFF))
    for k in range(len(docs)):
        d = docs[k]
        for p in range(offsets[d], offsets[d + 1]):
            x = values[p]
            for i in range(len(seeds)):
                h = _fmix64(x ^ seeds[i])
                if h < out[k, i]:
                    out[k, i] = h
    return out


@njit(cache=True)
def _bucket_pairs(order, keys):
    """All pairs (as positions into the caller's arrays, smaller first) of equal ``keys[order]``."""
    n = len(order)
    total = 0
    start = 0
    for i in range(1, n + 1):
        if i == n or keys[order[i]] != keys[order[start]]:
            m = i - start
            total += m * (m - 1) // 2
            start = i
    a = np.empty(total, np.int64)
    b = np.empty(total, np.int64)
    k = 0
    start = 0
    for i in range(1, n + 1):
        if i == n or keys[order[i]] != keys[order[start]]:
            for x in range(start, i):
                for y in range(x + 1, i):
                    u, v = order[x], order[y]
                    a[k], b[k] = min(u, v), max(u, v)
                    k += 1
            start = i
    return a, b


@njit(cache=True)
def _intersections(values, offsets, a, b):
    out = np.empty(len(a), np.int64)
    for k in range(len(a)):
        i, iend = offsets[a[k]], offsets[a[k] + 1]
        j, jend = offsets[b[k]], offsets[b[k] + 1]
        n = 0
        while i < iend and j < jend:
            if values[i] < values[j]:
                i += 1
            elif values[i] > values[j]:
                j += 1
            else:
                n += 1
                i += 1
                j += 1
        out[k] = n
    return out


def pair_jaccard(sets: ShingleSets, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact Jaccard of documents ``a[k]`` and ``b[k]`` (indices into ``sets``), vectorised."""
    inter = _intersections(sets.values, sets.offsets, a.astype(np.int64), b.astype(np.int64))
    union = sets.sizes()[a] + sets.sizes()[b] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def candidate_pairs(sets: ShingleSets, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pairs of ``docs`` (indices into ``sets``, non-empty) sharing an LSH band."""
    seeds = np.random.default_rng(MINHASH_SEED).integers(0, 2**64, size=BANDS * ROWS, dtype=np.uint64)
    sig = _minhash(sets.values, sets.offsets, docs.astype(np.int64), seeds)
    found = []
    for band in range(BANDS):
        cols = sig[:, band * ROWS:(band + 1) * ROWS]
        key = np.zeros(len(docs), np.uint64)
        for c in range(ROWS):
            key = _fmix64_array(key ^ cols[:, c])
        a, b = _bucket_pairs(np.argsort(key, kind="stable"), key)
        found.append(np.unique(a * len(docs) + b))
    pairs = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    return docs[pairs // len(docs)], docs[pairs % len(docs)]


def _fmix64_array(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


@dataclass
class Truth:
    ids: np.ndarray          # the documents' ids, in input order
    cluster: np.ndarray      # smallest id of each document's true cluster
    pairs: dict              # a, b (ids), jaccard: candidate pairs with J >= threshold - PAIR_MARGIN
    summary: dict


def compute_truth(ids, texts: list[str], threshold: float = 0.7, ngram: int = 5, processes: int = 1,
                  sets: ShingleSets | None = None) -> Truth:
    """True clusters and near-threshold pairs of the documents ``ids`` (unique) with ``texts``;
    ``sets`` passes their ``shingle_sets`` when the caller has them already."""
    start = time.perf_counter()
    ids = np.asarray(ids)
    sets = sets if sets is not None else shingle_sets(texts, ngram, processes)
    sizes = sets.sizes()
    # Identical sets: group the non-empty documents by their arrays' bytes; rep = smallest id.
    order = np.argsort(ids, kind="stable")
    rep_of = np.arange(len(ids))
    groups: dict[bytes, int] = {}
    for i in order[sizes[order] > 0]:
        rep_of[i] = groups.setdefault(sets[i].tobytes(), i)
    reps = np.array(sorted(set(groups.values()), key=lambda i: ids[i]), dtype=np.int64)
    a, b = candidate_pairs(sets, reps)
    jac = pair_jaccard(sets, a, b)
    edges = jac >= threshold
    members = np.flatnonzero(rep_of != np.arange(len(ids)))
    src = np.concatenate([a[edges], members])
    dst = np.concatenate([b[edges], rep_of[members]])
    graph = coo_matrix((np.ones(len(src), np.int32), (src, dst)), shape=(len(ids), len(ids)))
    _, label = connected_components(graph, directed=False)
    smallest = np.full(label.max() + 1 if len(ids) else 0, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, label, order.argsort())  # rank of each document in id order
    cluster = ids[order][smallest[label]]
    near = jac >= threshold - PAIR_MARGIN
    left, right = ids[np.concatenate([a[near], members])], ids[np.concatenate([b[near], rep_of[members]])]
    pairs = {"a": np.minimum(left, right), "b": np.maximum(left, right),
             "jaccard": np.concatenate([jac[near], np.ones(len(members))])}
    summary = {"documents": len(ids), "empty_documents": int((sizes == 0).sum()),
               "distinct_shingle_sets": len(reps), "true_clusters": len(smallest),
               "documents_in_clusters_of_2_plus": int((np.bincount(label)[label] > 1).sum()),
               "candidates_checked": len(a), "pairs_ge_threshold": int(edges.sum()),
               "pairs_ge_threshold_minus_0.15": int(near.sum()),
               "identical_set_members": len(members), "seconds": round(time.perf_counter() - start, 1)}
    return Truth(ids, cluster, pairs, summary)


def true_clusters(ids, texts: list[str], threshold: float = 0.7, ngram: int = 5, processes: int = 1) -> dict:
    """``{id: smallest id of its true cluster}``."""
    truth = compute_truth(ids, texts, threshold, ngram, processes)
    return dict(zip(truth.ids.tolist(), truth.cluster.tolist()))


def write_truth(truth: Truth, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    pq.write_table(pa.table({"id": truth.ids, "cluster": truth.cluster}), os.path.join(out, "clusters.parquet"))
    pq.write_table(pa.table(truth.pairs), os.path.join(out, "pairs.parquet"))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(truth.summary, f, indent=1)


def read_corpus(path: str, id_column: str, text_column: str) -> tuple[np.ndarray, list[str]]:
    table = pq.read_table(path, columns=[id_column, text_column])
    return table.column(id_column).to_numpy(), table.column(text_column).to_pylist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--id-column", default="id")
    p.add_argument("--text-column", default="content")
    p.add_argument("--threshold", type=float, default=0.7)
    p.add_argument("--ngram", type=int, default=5)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    start = time.perf_counter()
    ids, texts = read_corpus(args.corpus, args.id_column, args.text_column)
    if len(np.unique(ids)) != len(ids):
        sys.exit(f"error: {args.id_column} is not unique in {args.corpus}")
    truth = compute_truth(ids, texts, args.threshold, args.ngram, args.processes)
    truth.summary.update(threshold=args.threshold, ngram=args.ngram, seconds=round(time.perf_counter() - start, 1))
    write_truth(truth, args.out)
    print(json.dumps(truth.summary))


if __name__ == "__main__":
    main()
