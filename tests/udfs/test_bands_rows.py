"""The (bands, rows) search: the closed-form areas, the same choices as the quadrature search, bounded work."""

import math

import numpy as np
import pytest
from scipy.integrate import quad

import udfs.banding as banding
from pipelines.config import MAX_NUM_PERM
from udfs.banding import error_areas, optimal_bands_rows

THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
# Chosen by the search this one replaced (scipy ``quad`` per pair, every pair in a Python loop).
QUADRATURE_CHOICES = {
    (0.05, 0.95): {  # the default weights (LshConfig)
        64: [(21, 3), (19, 3), (16, 4), (16, 4), (12, 5), (12, 5), (10, 6), (8, 8), (6, 10)],
        128: [(26, 3), (32, 4), (24, 4), (25, 5), (21, 6), (18, 7), (16, 8), (12, 10), (9, 14)],
        256: [(53, 4), (51, 5), (41, 5), (42, 6), (36, 7), (30, 8), (25, 10), (19, 13), (15, 17)],
        512: [(102, 5), (85, 6), (69, 6), (64, 7), (56, 9), (51, 10), (42, 12), (32, 16), (24, 21)],
    },
    (0.5, 0.5): {
        64: [(14, 4), (12, 5), (10, 6), (9, 7), (8, 8), (7, 9), (5, 11), (4, 15), (3, 21)],
        128: [(25, 5), (21, 6), (18, 7), (16, 8), (14, 9), (11, 11), (9, 13), (8, 16), (5, 25)],
        256: [(42, 6), (36, 7), (32, 8), (28, 9), (25, 10), (21, 12), (17, 15), (13, 19), (9, 28)],
        512: [(73, 7), (64, 8), (56, 9), (51, 10), (42, 12), (36, 14), (28, 18), (22, 23), (16, 32)],
    },
}


@pytest.mark.parametrize("weights", list(QUADRATURE_CHOICES))
def test_same_choices_as_the_quadrature_search(weights):
    for num_perm, choices in QUADRATURE_CHOICES[weights].items():
        got = [optimal_bands_rows(t, num_perm, *weights) for t in THRESHOLDS]
        assert got == choices, num_perm


def test_closed_form_areas_equal_the_integrals():
    rng = np.random.default_rng(0)
    bands, rows = rng.integers(1, 400, 40), rng.integers(1, 40, 40)
    for t in (0.3, 0.7, 0.9):
        fp, fn = error_areas(t, bands, rows)
        for b, r, got_fp, got_fn in zip(bands.tolist(), rows.tolist(), fp, fn):
            assert got_fp == pytest.approx(quad(lambda s: 1 - (1 - s**r) ** b, 0, t, epsabs=1e-13)[0], abs=1e-11)
            assert got_fn == pytest.approx(quad(lambda s: (1 - s**r) ** b, t, 1, epsabs=1e-13)[0], abs=1e-11)


def test_exact_ties_go_to_fewer_bands_then_fewer_rows():
    # at t = 0.5 with equal weights, P(s) = s, s**2 and 2s - s**2 all err by exactly 1/8
    assert optimal_bands_rows(0.5, 2, 0.5, 0.5) == (1, 1)


def test_search_work_is_one_vectorised_call_at_the_largest_num_perm(monkeypatch):
    """The --num-perm 100000 hang: the search is now one call over n·H(n) pairs, and n is bounded."""
    calls = []

    def counting(threshold, bands, rows):
        calls.append(len(bands))
        return error_areas(threshold, bands, rows)

    monkeypatch.setattr(banding, "error_areas", counting)
    optimal_bands_rows.cache_clear()
    bands, rows = optimal_bands_rows(0.7, MAX_NUM_PERM, 0.05, 0.95)
    assert bands * rows <= MAX_NUM_PERM
    n = MAX_NUM_PERM
    assert calls == [sum(n // b for b in range(1, n + 1))]
    assert calls[0] <= n * (1 + math.log(n))  # 75,000 pairs at 8192
