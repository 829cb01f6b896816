import collections
import itertools

import numpy as np
import pyarrow as pa
import pytest
from scipy.integrate import quad

from udfs.banding import collision_probability, optimal_bands_rows
from udfs.lsh import (band_keys, bucket_pairs, bucket_pairs_against, partition_tags, signature_agreement,
                      spark_int_hash, split_by_part)
from udfs.minhash import compute_signatures, permutations


def test_optimal_bands_rows_is_the_weighted_area_minimum():
    num_perm, t, wfp, wfn = 32, 0.6, 0.4, 0.6
    bands, rows = optimal_bands_rows(t, num_perm, wfp, wfn)
    assert bands * rows <= num_perm

    def error(b, r):
        fp = quad(lambda s: 1 - (1 - s**r) ** b, 0, t)[0]
        fn = quad(lambda s: (1 - s**r) ** b, t, 1)[0]
        return wfp * fp + wfn * fn

    best = min(((b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)),
               key=lambda br: error(*br))
    assert (bands, rows) == best
    # The curve puts the threshold on its steep part: most pairs well above t are caught.
    assert collision_probability(t + 0.15, bands, rows) > 0.9 > collision_probability(t - 0.3, bands, rows)


def test_band_keys_equal_exactly_when_bands_equal():
    sigs = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 2, 3, 4], [1, 2, 3, 4]], dtype=np.uint32)
    keys = band_keys(sigs, 2, 2)
    assert keys[0, 0] == keys[1, 0] == keys[3, 0] != keys[2, 0]
    assert keys[0, 1] == keys[2, 1] == keys[3, 1] != keys[1, 1]
    # the same values in a different band give a different key
    assert band_keys(np.array([[5, 5, 5, 5]], dtype=np.uint32), 2, 2)[0, 0] != \
        band_keys(np.array([[5, 5, 5, 5]], dtype=np.uint32), 2, 2)[0, 1]


@pytest.mark.parametrize("similarity", [0.4, 0.6, 0.75, 0.9])
def test_candidate_rate_follows_the_s_curve(similarity):
    """Fraction of pairs sharing a bucket vs 1-(1-s^r)^b, within 4 binomial standard errors."""
    bands, rows, num_perm, pairs = 16, 8, 128, 400
    a, b = permutations(num_perm, 42)
    n_union = 200
    shared = int(round(similarity * n_union))
    left, right = [], []
    for p in range(pairs):
        words = [f"p{p}w{k}" for k in range(n_union)]
        rest = n_union - shared
        left.append(" ".join(words[:shared + rest // 2]))
        right.append(" ".join(words[:shared] + words[shared + rest // 2:]))
    ka = band_keys(compute_signatures(pa.array(left), ngram=1, char_ngrams=False, a=a, b=b).signatures, bands, rows)
    kb = band_keys(compute_signatures(pa.array(right), ngram=1, char_ngrams=False, a=a, b=b).signatures, bands, rows)
    rate = (ka == kb).any(axis=1).mean()
    expected = collision_probability(shared / n_union, bands, rows)
    stderr = max(np.sqrt(expected * (1 - expected) / pairs), 1 / pairs)
    assert abs(rate - expected) < 4 * stderr, (rate, expected)


def test_signature_agreement_counts_equal_positions_of_the_rows_each_pair_names():
    signatures = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [1, 2, 0, 4], [1, 1, 1, 1]], dtype=np.uint32)
    got = signature_agreement(signatures, np.array([0, 1, 0, 3, 2]), np.array([2, 3, 1, 0, 2]))
    np.testing.assert_allclose(got, [0.75, 0.0, 0.0, 0.25, 1.0])
    with pytest.raises(IndexError):
        signature_agreement(signatures, np.array([0]), np.array([4]))


def test_bucket_pairs_compare_every_pair_of_small_buckets_and_bounded_partners_in_large_ones():
    """Against a dictionary of buckets built row by row: the same distinct pairs, no self-loops."""
    rng = np.random.default_rng(11)
    n, all_pairs_up_to, neighbours = 5000, 6, 3
    keys = rng.integers(-400, 400, n)  # many buckets of a few members, some singletons
    keys[:300] = 999  # and one large bucket
    ids = rng.choice(np.arange(-10**12, 10**12, 7919), n, replace=False)
    # Rows 300-349 and 400-449 pair up in buckets of their own, and the same pairs meet again
    # in a second set of buckets: each pair must come out once.
    keys[300:350] = keys[400:450] = np.arange(5000, 5050)
    keys[450:500] = keys[500:550] = np.arange(6000, 6050)
    ids[450:500], ids[500:550] = ids[300:350], ids[400:450]
    buckets = {}
    for key, doc in zip(keys.tolist(), ids.tolist()):
        buckets.setdefault(key, []).append(doc)
    small = {(max(a, b), min(a, b)) for members in buckets.values() if len(members) <= all_pairs_up_to
             for a, b in itertools.combinations(members, 2)}
    src, dst = bucket_pairs(keys, ids, all_pairs_up_to, neighbours)
    got = set(zip(src.tolist(), dst.tolist()))
    assert len(got) == len(src) and all(a > b for a, b in got)
    large = [set(m) for m in buckets.values() if len(m) > all_pairs_up_to]
    in_large = [{p for p in got if p[0] in members and p[1] in members} for members in large]
    assert got == small.union(*in_large)  # small buckets: every pair; nothing outside a bucket
    for members, pairs in zip(large, in_large):
        # a chain over a random order: each member paired with the `neighbours` after it
        k = len(members)
        assert len(pairs) == k * neighbours - neighbours * (neighbours + 1) // 2
        degree = collections.Counter(x for p in pairs for x in p)
        assert set(degree) == members and min(degree.values()) >= neighbours
    # the order is random per bucket, not the order of ids
    by_id = sorted(buckets[999])
    biggest = in_large[large.index(set(by_id))]
    assert len(biggest & {(y, x) for x, y in zip(by_id, by_id[1:])}) < len(by_id) // 10
    assert bucket_pairs(keys[:0], ids[:0], all_pairs_up_to, neighbours)[0].size == 0


def test_bucket_pairs_against_an_index_are_the_pairs_of_one_pass_over_both_that_involve_a_new_row():
    """What incremental dedup relies on: the pairs of the new rows are those of a joint pass,
    large (sampled) buckets included, and no pair of two indexed rows comes out."""
    rng = np.random.default_rng(5)
    n_new, n_old, all_pairs_up_to, neighbours = 1500, 6000, 6, 3
    keys = rng.integers(-500, 500, n_new + n_old)
    keys[:40] = keys[n_new:n_new + 200] = 999  # a large bucket of both kinds
    keys[n_new + 200:n_new + 260] = 777  # a large bucket of indexed rows only
    ids = rng.choice(np.arange(-10**12, 10**12, 7919), n_new + n_old, replace=False)
    new_ids = set(ids[:n_new].tolist())
    joint = set(zip(*(a.tolist() for a in bucket_pairs(keys, ids, all_pairs_up_to, neighbours))))
    expected = {p for p in joint if p[0] in new_ids or p[1] in new_ids}
    src, dst = bucket_pairs_against(keys[:n_new], ids[:n_new], keys[n_new:], ids[n_new:], all_pairs_up_to,
                                    neighbours)
    got = set(zip(src.tolist(), dst.tolist()))
    assert got == expected and len(got) == len(src)
    kinds = collections.Counter((a in new_ids) + (b in new_ids) for a, b in got)
    assert kinds[1] > 0 and kinds[2] > 0 and kinds[0] == 0  # new–indexed and new–new pairs, nothing else


def test_split_by_part_keeps_each_key_in_one_part_and_loses_no_pair():
    rng = np.random.default_rng(2)
    keys = rng.integers(-2**63, 2**63 - 1, 3000, dtype=np.int64)
    keys[1000:1500] = keys[:500]  # buckets of several members
    ids = np.arange(3000, dtype=np.int64)
    blocks = split_by_part(keys, ids, 7)
    assert sorted(np.concatenate([i for _, _, i in blocks]).tolist()) == ids.tolist()
    part_of = {}
    for part, block_keys, block_ids in blocks:
        assert 0 <= part < 7 and len(block_keys) == len(block_ids) > 0
        for key, doc in zip(block_keys.tolist(), block_ids.tolist()):
            assert keys[doc] == key and part_of.setdefault(key, part) == part


def test_spark_int_hash_is_sparks_hash(spark):
    from pyspark.sql import functions as F

    values = np.array([0, 1, -1, 7, 2**31 - 1, -2**31, 123456789, -987654321], dtype=np.int64)
    frame = spark.createDataFrame([(int(v),) for v in values], "v int")
    expected = [r[0] for r in frame.select(F.hash("v")).collect()]
    assert spark_int_hash(values).tolist() == expected


@pytest.mark.parametrize("parts", [1, 2, 7, 64])
def test_partition_tags_send_each_part_to_a_partition_of_its_own(spark, parts):
    from pyspark.sql import functions as F

    tags = partition_tags(parts)
    frame = spark.createDataFrame([(int(t), p) for p, t in enumerate(tags)], "tag int, part int")
    placed = frame.repartition(parts, "tag").select("part", F.spark_partition_id().alias("partition")).collect()
    assert sorted((r["part"], r["partition"]) for r in placed) == [(p, p) for p in range(parts)]
