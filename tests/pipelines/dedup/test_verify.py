"""Exact verification: homes for the uncertain pairs, each pair scored against its own two texts,
and the counts of ``stats.json`` against the edges they count."""

import re

import numpy as np
import pyarrow as pa
import pytest

from pipelines.config import LshConfig, MinHashConfig, VerifyMode
from pipelines.dedup.checkpoints import Checkpoints
from pipelines.dedup.verify import (exact_scores, pair_homes, score_edges, scored_counts, uncertain_range,
                                    verification_counts, verify_edges)
from pipelines.io.publish import OutputDir
from udfs.arrow_buffers import binary_from_rows
from udfs.minhash import compute_signatures, permutations


def components_by_union_find(src, dst):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in zip(src, dst):
        parent[find(a)] = find(b)
    return [find(a) for a in src]


@pytest.mark.parametrize("max_pairs", [1, 3, 1000])
def test_pair_homes_keep_a_component_together_up_to_max_pairs(max_pairs):
    rng = np.random.default_rng(7)
    src = rng.integers(-50, 150, 400)
    dst = rng.integers(-50, 150, 400)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    homes = pair_homes(src, dst, max_pairs)
    component = components_by_union_find(src.tolist(), dst.tolist())
    pairs_of = {}
    for c in component:
        pairs_of[c] = pairs_of.get(c, 0) + 1
    home_component = {}
    for h, c in zip(homes.tolist(), component):
        assert home_component.setdefault(h, c) == c  # a home never mixes components
    _, per_home = np.unique(homes, return_counts=True)
    assert per_home.max() <= max_pairs
    for c, n in pairs_of.items():  # as few homes as the bound allows
        assert len({h for h, k in zip(homes.tolist(), component) if k == c}) == -(-n // max_pairs)


def shingles(text, ngram=5):
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + ngram]) for i in range(max(1, len(words) - ngram + 1))}


@pytest.fixture
def checkpoints(spark, tmp_path):
    return Checkpoints(spark, OutputDir(spark, str(tmp_path / "out"), False, run_key="fixed"))


def test_driver_table_reads_back_as_the_table_it_was(spark, checkpoints):
    table = pa.table({"src": pa.array([3, -2**62], pa.int64()), "name": ["a", None], "x": [0.5, 1.0]})
    checkpoints.driver_table(pa.table({"src": [1]}), "t")
    got = checkpoints.driver_table(table, "t")  # a second table of the same name replaces the first
    assert got.toArrow().equals(table)
    assert got.schema.simpleString() == "struct<src:bigint,name:string,x:double>"


@pytest.fixture(scope="module")
def chains(spark):
    """Chains of versions, each edited further from the first: every document is in several
    pairs, and its Jaccard to each partner differs, so a pair scored against any set but its
    own two comes out wrong."""
    rng = np.random.default_rng(11)
    vocabulary = [f"v{k}" for k in range(5000)]
    ids, texts, src, dst = [], [], [], []
    for chain in range(12):
        words = list(rng.choice(vocabulary, 300))
        members = []
        for version in range(8):
            for _ in range(int(rng.integers(2, 12))):
                words[int(rng.integers(len(words)))] = str(rng.choice(vocabulary))
            doc = int(rng.integers(-2**62, 2**62))
            ids.append(doc)
            texts.append(" ".join(words))
            members.append(doc)
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                src.append(members[i])
                dst.append(members[j])
    src.append(ids[0])  # one pair across chains joins their components
    dst.append(ids[-1])
    documents = spark.createDataFrame(pa.table({"doc_id": ids, "content": texts, "other": [len(t) for t in texts]}))
    estimate = rng.random(len(src))
    pairs = spark.createDataFrame(pa.table({"src": src, "dst": dst, "similarity": estimate}))
    sets = dict(zip(ids, map(shingles, texts)))

    def jaccard(a, b):
        return len(sets[a] & sets[b]) / len(sets[a] | sets[b])

    expected = {(a, b): (jaccard(a, b), e) for a, b, e in zip(src, dst, estimate)}
    # the test can tell: for most pairs, no other document in dst's place gives the same value
    told = [jaccard(a, b) not in {jaccard(a, c) for c in ids if c != b} for a, b in zip(src, dst)]
    assert np.mean(told) > 0.9
    return documents, pairs, expected


@pytest.mark.parametrize("broadcast_limit,max_home_docs", [
    (10_000, 10_000),  # homed on the driver: one home per component
    (10_000, 6),  # ... components cut into homes of at most 3 pairs
    (10, 10_000),  # too many pairs for the driver: a home per hash of the pair
])
def test_exact_scores_give_each_pair_the_jaccard_of_its_own_two_texts(spark, chains, checkpoints, broadcast_limit,
                                                                      max_home_docs):
    documents, pairs, expected = chains
    got = exact_scores(pairs, documents, "content", MinHashConfig(), broadcast_limit, max_home_docs,
                       checkpoints.driver_table).toArrow()
    rows = {(a, b): (j, e) for a, b, j, e in zip(*(got.column(c).to_pylist()
                                                  for c in ("src", "dst", "similarity", "estimate")))}
    assert got.num_rows == len(expected) and rows == expected


@pytest.mark.parametrize("broadcast_limit,max_home_docs", [(10_000, 10_000), (10_000, 6), (10, 10_000)])
def test_score_edges_give_each_pair_the_agreement_of_its_own_two_signatures(spark, chains, checkpoints,
                                                                            broadcast_limit, max_home_docs):
    documents, pairs, _ = chains
    table = documents.toArrow()
    num_perm = 256
    a, b = permutations(num_perm, 1)
    signatures = compute_signatures(table.column("content").combine_chunks(), ngram=5, char_ngrams=False,
                                    a=a, b=b).signatures
    row_of = {doc: k for k, doc in enumerate(table.column("doc_id").to_pylist())}
    missing = 10**15  # a pair whose end has no signature gets no score
    edges = pairs.select("src", "dst").unionByName(spark.createDataFrame([(missing, int(table["doc_id"][0]))],
                                                                         "src long, dst long"))
    sigs = spark.createDataFrame(pa.table({"doc_id": table.column("doc_id"),
                                           "signature": binary_from_rows(signatures)}))
    got = score_edges(edges, sigs, num_perm, broadcast_limit, max_home_docs, checkpoints.driver_table).toArrow()
    rows = dict(zip(zip(got.column("src").to_pylist(), got.column("dst").to_pylist()),
                    got.column("similarity").to_pylist()))
    expected = {(s, d): float(np.mean(signatures[row_of[s]] == signatures[row_of[d]]))
                for s, d in zip(*(pairs.toArrow().column(c).to_pylist() for c in ("src", "dst")))}
    assert got.num_rows == len(expected) and rows == expected
    # the test can tell: for most pairs, another document in dst's place gives another score
    told = [np.mean(signatures[row_of[s]] == signatures[row_of[d]]) != np.mean(signatures[row_of[s]] == signatures[k])
            for s, d in expected for k in range(len(signatures)) if k not in (row_of[s], row_of[d])]
    assert np.mean(told) > 0.9


def test_exact_scores_of_no_pairs_is_empty(spark, chains, checkpoints):
    documents, pairs, _ = chains
    got = exact_scores(pairs.limit(0), documents, "content", MinHashConfig(), 10_000, 10_000,
                       checkpoints.driver_table).toArrow()
    assert got.num_rows == 0


def aggregate(df, counts):
    return df.agg(*[c.alias(key) for key, c in counts.items()]).first().asDict() if counts else {}


@pytest.mark.parametrize("mode", list(VerifyMode))
def test_verification_counts_agree_with_the_edges_and_scores_they_summarise(spark, chains, checkpoints, mode):
    documents, pairs, expected = chains
    lsh = LshConfig(threshold=0.5, verify=mode)
    counted = {}

    class KeptAsTheyAre(Checkpoints):  # evaluates the counts Checkpoints would observe
        def __call__(self, df, name, counts=None):
            counted[name] = aggregate(df, counts or {})
            return df

    verification = verify_edges(pairs, documents, "content", lsh, MinHashConfig(), 10_000, 10_000,
                                KeptAsTheyAre(spark, checkpoints.out))
    counts = verification_counts(aggregate(pairs, scored_counts(lsh, MinHashConfig().num_perm)),
                                 counted.get("exact-scores"))
    edges = {(a, b) for a, b in verification.edges.select("src", "dst").collect()}
    estimates = [e for _, e in expected.values()]
    assert counts["candidate_edges"] == len(expected)
    assert counts["estimate_passed"] == sum(e >= 0.5 for e in estimates)
    assert counts["verified_edges"] == len(edges)
    if mode is VerifyMode.EXACT:
        low, high = uncertain_range(lsh, MinHashConfig().num_perm)
        checked = [(j, e) for j, e in expected.values() if low < e < high]
        assert 0 < len(checked) < len(expected) and 0 < sum(j >= 0.5 for j, _ in checked) < len(checked)
        assert counts["exact_verification"] == {
            "checked": len(checked), "passed": sum(j >= 0.5 for j, _ in checked),
            "estimate_passed_exact_failed": sum(e >= 0.5 > j for j, e in checked),
            "estimate_failed_exact_passed": sum(j >= 0.5 > e for j, e in checked)}
        assert len(edges) == sum(e >= high for e in estimates) + counts["exact_verification"]["passed"]
    else:
        assert counts["exact_verification"] is None
        assert len(edges) == (len(expected) if mode is VerifyMode.OFF else counts["estimate_passed"])
