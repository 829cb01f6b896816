"""The fused kernel against an independent Python model of its documented behaviour."""

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import xxhash

from udfs.minhash import (ShingleSetTable, SignatureMemo, compute_signatures, pair_jaccard, permutations, process_memo,
                          set_jaccard, shingle_sets)
from udfs.signature_format import EMPTY_SLOT
from udfs.text import CHAR_CLASSES, LOWERCASE, SPACE, WORD

MASK64 = (1 << 64) - 1
P1, P2, P5 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x27D4EB2F165667C5


def _round(acc, lane):
    acc = (acc + lane * P2) & MASK64
    acc = ((acc << 31) | (acc >> 33)) & MASK64
    return (acc * P1) & MASK64


def _avalanche(h):
    h ^= h >> 33
    h = (h * P2) & MASK64
    h ^= h >> 29
    h = (h * 0x165667B19E3779F9) & MASK64
    return h ^ (h >> 32)


def token_hash(token):
    h = P5
    for byte in token.encode():
        h = ((h ^ byte) * P1) & MASK64
    return _avalanche(h)


def reference_signature(text, ngram, a, b, char_mode=False):
    """The module docstring, written out in plain Python with ``re`` tokenisation.

    Lowercasing is Arrow's ``utf8_lower`` (simple per-code-point case mapping: no final sigma,
    'İ' → 'i'), which the module documents as part of the format.
    """
    return reference_signature_of_lowered(pc.utf8_lower(pa.array([text]))[0].as_py(), ngram, a, b, char_mode)


def reference_signature_of_lowered(lowered, ngram, a, b, char_mode=False):
    if char_mode:
        units = [ord(c) for c in " ".join(lowered.split())]
    else:
        units = [token_hash(t) for t in re.findall(r"\w+", lowered)]
    windows = [units[i:i + ngram] for i in range(len(units) - ngram + 1)] if len(units) >= ngram else [units]
    sig = np.full(len(a), 0xFFFFFFFF, dtype=np.uint64)
    for window in windows:
        if not window:
            continue
        s = P5
        for t in window:
            s = _round(s, t)
        s = _avalanche((s + len(window)) & MASK64)
        x = (s ^ (s >> 32)) & 0xFFFFFFFF
        values = np.array([((int(ai) * x + int(bi)) & MASK64) >> 32 for ai, bi in zip(a, b)], dtype=np.uint64)
        sig = np.minimum(sig, values)
    return sig.astype(np.uint32)


TEXTS = [
    "The quick brown fox jumps over the lazy dog, again and again!",
    "def f(x):\n    return x_1 + 2  # ünïcödé straße ΣΊΣΥΦΟΣ",
    "日本語のテキスト、句読点。 and   mixed\twhitespace\n\n",
    "one two",
    "word",
    "   ",
    "!!! ??? ...",
    "",
    "Ünïcode ÄB x" * 40,
    "İstanbul ǅemal ΣΊΣΥΦΟΣ ﬁne",
]


@pytest.mark.parametrize("char_mode,ngram", [(False, 5), (False, 1), (False, 3), (True, 5)])
def test_signatures_match_python_reference(char_mode, ngram):
    a, b = permutations(64, seed=7)
    out = compute_signatures(pa.array(TEXTS), ngram=ngram, char_ngrams=char_mode, a=a, b=b)
    for text, sig, n in zip(TEXTS, out.signatures, out.n_shingles):
        if n == 0:
            assert (sig == EMPTY_SLOT).all()
            assert not re.findall(r"\w+", text) or char_mode
        else:
            np.testing.assert_array_equal(sig, reference_signature(text, ngram, a, b, char_mode), err_msg=text)


def test_exact_hash_is_xxh64_of_normalised_text_and_nulls_are_empty():
    texts = pa.array(["  Hello\t\tWorld \n", "hello world", "hello  world!", None, " \n "])
    a, b = permutations(8, 1)
    out = compute_signatures(texts, ngram=5, char_ngrams=False, a=a, b=b)
    assert int(out.exact_hash_hi[0]) == xxhash.xxh64_intdigest(b"hello world", seed=0)
    assert int(out.exact_hash_lo[0]) == xxhash.xxh64_intdigest(b"hello world", seed=1)
    assert out.exact_hash_hi[0] == out.exact_hash_hi[1] != out.exact_hash_hi[2]
    assert list(out.normalized_length) == [11, 11, 12, 0, 0]
    assert list(out.n_shingles[3:]) == [0, 0]


def test_sliced_input_is_read_at_its_offset():
    a, b = permutations(16, 3)
    full = pa.array(["zero one two three four five", "alpha beta gamma delta epsilon zeta", None])
    whole = compute_signatures(full, ngram=2, char_ngrams=False, a=a, b=b)
    part = compute_signatures(full.slice(1), ngram=2, char_ngrams=False, a=a, b=b)
    np.testing.assert_array_equal(part.signatures, whole.signatures[1:])


def test_short_documents_get_distinct_signatures():
    texts = pa.array(["alpha", "beta", "alpha beta", "gamma delta", "x"])
    a, b = permutations(128, 42)
    sigs = compute_signatures(texts, ngram=5, char_ngrams=False, a=a, b=b).signatures
    assert len({s.tobytes() for s in sigs}) == len(texts)


def test_estimates_are_unbiased_against_exact_jaccard():
    """Pairs of token sets with planted overlap: mean estimate within 4 standard errors of J."""
    a, b = permutations(256, 42)
    for target in (0.3, 0.5, 0.7, 0.9):
        left, right, truth = [], [], []
        for pair in range(200):
            n_union = 300
            shared = int(round(target * n_union))
            words = [f"w{pair}x{k}" for k in range(n_union)]
            only = n_union - shared
            set_a = words[:shared] + words[shared:shared + only // 2]
            set_b = words[:shared] + words[shared + only // 2:]
            truth.append(shared / n_union)
            left.append(" ".join(set_a))
            right.append(" ".join(set_b))
        sa = compute_signatures(pa.array(left), ngram=1, char_ngrams=False, a=a, b=b).signatures
        sb = compute_signatures(pa.array(right), ngram=1, char_ngrams=False, a=a, b=b).signatures
        estimates = (sa == sb).mean(axis=1)
        j = float(np.mean(truth))
        stderr = np.sqrt(j * (1 - j) / 256 / len(estimates))
        assert abs(estimates.mean() - j) < 4 * stderr, (target, estimates.mean(), j)
        # and the spread matches the binomial model (not a constant or degenerate estimator)
        assert 0.5 < estimates.std() / np.sqrt(j * (1 - j) / 256) < 1.5


def test_signatures_are_bit_for_bit_stable():
    """Signatures are persisted: any change to tokens, hashes or permutations must bump
    SIGNATURE_VERSION and update these digests deliberately."""
    from udfs.signature_format import SIGNATURE_VERSION

    a, b = permutations(256, 42)
    texts = pa.array(["The quick brown fox jumps over the lazy dog, again and again!",
                      "def f(x):\n    return x_1 + 2  # ünïcödé straße", "short", "日本語のテキスト、句読点。 and mixed"])
    words = compute_signatures(texts, ngram=5, char_ngrams=False, a=a, b=b)
    chars = compute_signatures(texts, ngram=5, char_ngrams=True, a=a, b=b)
    assert SIGNATURE_VERSION == 1
    assert xxhash.xxh64_hexdigest(words.signatures.tobytes()) == "76de562e0ba43444"
    assert xxhash.xxh64_hexdigest(chars.signatures.tobytes()) == "e9b92c3c103c21b2"
    assert [int(h) for h in words.exact_hash_hi] == [
        0xCCF85F0F4DB14814, 0x6DD22CB2C8487FDA, 0xA4DBB3294161A9A4, 0x884CE8F68DC45DA4]


# Pieces for random texts: ASCII words of every case and length, whitespace runs, punctuation,
# and code points whose lowercase has another UTF-8 length ('Ⱥ' 2 → 3 bytes, 'İ' 2 → 1,
# 'ẞ' 3 → 2, Kelvin 'K' 3 → 1) or that only lowercase under Arrow's tables.
PIECES = ["the", "Quick", "BROWN", "fox_1", "42", "abcdefghijklmnopq", " ", " ", "  ", "\t", "\r\n", ",", ".",
          "é", "É", "straße", "ẞ", "Ⱥb", "Ⱦ", "İx", "\u212a", "\u2126", "日本", "\u3000", "\xa0", "🙂", "ǅ",
          "ΣΊΣ", "\x00", "\x1c", "_", "\ua7cb", "ǈa"]
# Byte sequences that are not UTF-8: Arrow's utf8_lower rejects some and re-encodes or keeps
# others (overlong forms, surrogates, code points past U+10FFFF).
MALFORMED = [b"\xc0\x80", b"\xc1\x81", b"\xc0\xa0", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
             b"\xe0\x80\x80", b"\xc3", b"\x80", b"\xff", b"\xe2\x82("]


def random_texts(rng, n):
    return ["".join(rng.choice(PIECES, int(rng.integers(0, 30)))) for _ in range(n)]


def string_array(values):
    """A ``string`` array over raw bytes, valid UTF-8 or not (``pa.array`` would check)."""
    offsets = np.cumsum([0] + [len(v) for v in values]).astype(np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def test_char_classes_match_python_str_predicates():
    expected = np.zeros(0x110000, dtype=np.uint8)
    for cp in range(0x110000):
        ch = chr(cp)
        expected[cp] = WORD if ch.isalnum() or ch == "_" else SPACE if ch.isspace() else 0
    np.testing.assert_array_equal(CHAR_CLASSES, expected)


def test_lowercase_table_is_arrow_utf8_lower_code_point_by_code_point():
    rng = np.random.default_rng(3)
    code_points = rng.integers(0, 0x110000, 20000)
    code_points = code_points[(code_points < 0xD800) | (code_points > 0xDFFF)]
    texts = random_texts(rng, 200) + ["".join(map(chr, code_points[i:i + 50])) for i in range(0, 20000, 50)]
    lowered = pc.utf8_lower(pa.array(texts)).to_pylist()
    assert lowered == ["".join(chr(LOWERCASE[ord(c)]) for c in text) for text in texts]


@pytest.mark.parametrize("char_mode,ngram", [(False, 5), (False, 2), (True, 3)])
def test_random_texts_match_python_reference(char_mode, ngram):
    rng = np.random.default_rng(ngram)
    texts = random_texts(rng, 150)
    a, b = permutations(16, seed=5)
    out = compute_signatures(pa.array(texts), ngram=ngram, char_ngrams=char_mode, a=a, b=b)
    for text, sig, hi in zip(texts, out.signatures, out.exact_hash_hi):
        normalised = " ".join(pc.utf8_lower(pa.array([text]))[0].as_py().split())
        assert int(hi) == (xxhash.xxh64_intdigest(normalised.encode(), seed=0) if normalised else 0), text
        np.testing.assert_array_equal(sig, reference_signature(text, ngram, a, b, char_mode), err_msg=text)


def test_malformed_utf8_is_lowercased_as_arrow_does():
    """Where ``pc.utf8_lower`` raises, so does the kernel; otherwise it works on Arrow's output
    (bytes Arrow keeps that are not UTF-8 are neither word nor space characters)."""
    rng = np.random.default_rng(11)
    a, b = permutations(16, seed=5)
    raised = 0
    for _ in range(60):
        values = [t.encode() for t in random_texts(rng, 8)]
        k = int(rng.integers(0, len(values)))
        at = int(rng.integers(0, len(values[k]) + 1))
        values[k] = values[k][:at] + MALFORMED[int(rng.integers(0, len(MALFORMED)))] + values[k][at:]
        texts = string_array(values)
        try:
            lowered = pc.utf8_lower(texts)
        except pa.ArrowInvalid:
            raised += 1
            with pytest.raises(pa.ArrowInvalid):
                compute_signatures(texts, ngram=3, char_ngrams=False, a=a, b=b)
            continue
        out = compute_signatures(texts, ngram=3, char_ngrams=False, a=a, b=b)
        for value, sig, hi in zip(lowered, out.signatures, out.exact_hash_hi):
            text = value.as_buffer().to_pybytes().decode("utf-8", "surrogateescape")
            normalised = " ".join(text.split()).encode("utf-8", "surrogateescape")
            assert int(hi) == (xxhash.xxh64_intdigest(normalised, seed=0) if normalised else 0), normalised
            expected = reference_signature_of_lowered(text, 3, a, b)
            np.testing.assert_array_equal(sig, expected, err_msg=repr(text))
    assert 0 < raised < 60


def exact_jaccard(left, right, ngram, char_ngrams):
    """``J(left[i], right[i])``, the two columns shingled as one batch."""
    sets = shingle_sets(pa.concat_arrays([left, right]), ngram=ngram, char_ngrams=char_ngrams)
    index = np.arange(len(left))
    return set_jaccard(sets, index, index + len(left))


def python_shingle_set(text, ngram, char_mode):
    """Shingles as tuples of tokens (or code points), from Arrow's lowercasing and ``re``."""
    lowered = pc.utf8_lower(pa.array([text]))[0].as_py()
    units = list(" ".join(lowered.split())) if char_mode else re.findall(r"\w+", lowered)
    if 0 < len(units) < ngram:
        return {tuple(units)}
    return {tuple(units[i:i + ngram]) for i in range(len(units) - ngram + 1)}


@pytest.mark.parametrize("char_mode,ngram", [(False, 5), (False, 1), (True, 4)])
def test_exact_jaccard_equals_jaccard_of_python_shingle_sets(char_mode, ngram):
    rng = np.random.default_rng(3)
    texts = random_texts(rng, 120) + TEXTS
    base = [texts[int(i)] for i in rng.integers(0, len(texts), 300)]
    # pairs of every similarity: a text against an edited copy of itself, or against another text
    other = [t[: len(t) // 2] + texts[int(k)] if k % 2 else texts[int(k)] for t, k in
             zip(base, rng.integers(0, len(texts), 300))]
    got = exact_jaccard(pa.array(base), pa.array(other), ngram=ngram, char_ngrams=char_mode)
    for x, y, j in zip(base, other, got):
        a, b = python_shingle_set(x, ngram, char_mode), python_shingle_set(y, ngram, char_mode)
        assert j == (len(a & b) / len(a | b) if a or b else 0.0), (x, y)
    assert 0 < np.mean(got == 1.0) < np.mean(got > 0) < 1
    # a set is the sorted distinct hashes, one per distinct shingle
    sets = shingle_sets(pa.array(base), ngram=ngram, char_ngrams=char_mode)
    for d, text in enumerate(base):
        hashes = sets.values[sets.offsets[d]:sets.offsets[d + 1]]
        assert len(hashes) == len(python_shingle_set(text, ngram, char_mode))
        assert np.all(np.diff(hashes) > 0)


def test_shingle_sets_of_long_and_repetitive_documents_are_sorted_and_distinct():
    # Long documents fill many sort buckets; repeats (one line pasted thousands of times) crowd
    # one bucket with equal hashes, the path where the bucket sort hands over to np.sort.
    rng = np.random.default_rng(5)
    words = [f"w{k}" for k in range(3000)]
    texts = [" ".join(rng.choice(words, 40_000)),
             "same line of code here\n" * 5000 + " ".join(rng.choice(words, 2000)),
             " ".join(rng.choice(words[:3], 10_000)),  # 3**5 possible 5-grams, each repeated
             "one", ""]
    sets = shingle_sets(pa.array(texts), ngram=5, char_ngrams=False)
    for d, text in enumerate(texts):
        hashes = sets.values[sets.offsets[d]:sets.offsets[d + 1]]
        assert len(hashes) == len(python_shingle_set(text, 5, False))
        assert np.all(np.diff(hashes) > 0)
    # the sets are the same whichever documents share the batch
    alone = shingle_sets(pa.array(texts[1:2]), ngram=5, char_ngrams=False)
    np.testing.assert_array_equal(alone.values, sets.values[sets.offsets[1]:sets.offsets[2]])


def test_pair_jaccard_looks_documents_up_by_id_in_concatenated_sets():
    texts = ["a b c d e f", "a b c d e g", "", "x y z", "a b c d e f"]
    ids = np.array([40, -7, 5, 12, 40])  # any order; a repeated id comes with the same text
    batches = [texts[:2], texts[2:3], [], texts[3:]]  # shingled in parts, as a task receives them
    table = ShingleSetTable(ngram=2, char_ngrams=False)
    for batch in batches:
        table.add(pa.array(batch, pa.string()))
    sets = table.sets()
    src, dst = np.array([40, 40, -7, 12, 5]), np.array([-7, 12, 12, 40, 40])
    got = pair_jaccard(ids, sets, src, dst)
    python = {i: python_shingle_set(t, 2, False) for i, t in zip(ids, texts)}
    assert list(got) == [len(python[a] & python[b]) / len(python[a] | python[b]) for a, b in zip(src, dst)]
    assert got[0] == 4 / 6 and got[1] == 0.0 and got[4] == 0.0
    with pytest.raises(KeyError):
        pair_jaccard(ids, sets, np.array([40]), np.array([13]))


def test_a_table_grown_batch_by_batch_holds_the_sets_of_one_call():
    """Batches whose sets outgrow the table's room (single letters: a distinct 5-gram per two
    bytes) and a batch of malformed UTF-8, which the kernel shingles twice from the same place."""
    rng = np.random.default_rng(3)
    letters = [" ".join(rng.choice(list("abcdefghij"), int(rng.integers(0, 3000)))) for _ in range(12)]
    malformed = string_array([b"ABC DEF \xc1\x81 GHI JKL MNO PQR", b"stu vwx yz0 123 456"])  # Arrow reads "a"
    batches = [pa.array(letters[:5]), malformed, pa.array(letters[5:6]), pa.array([], pa.string()),
               pa.array(letters[6:])]
    table = ShingleSetTable(ngram=5, char_ngrams=False)
    for batch in batches:
        table.add(batch)
    grown = table.sets()
    at_once = shingle_sets(pa.concat_arrays(batches), ngram=5, char_ngrams=False)
    np.testing.assert_array_equal(grown.offsets, at_once.offsets)
    np.testing.assert_array_equal(grown.values, at_once.values)
    sizes = np.diff(grown.offsets)
    assert list(sizes[:5]) == [len(python_shingle_set(t, 5, False)) for t in letters[:5]]
    assert sizes[:5].sum() > sum(len(t) for t in letters[:5]) // 4  # more than the first batch's room


def test_exact_jaccard_reads_malformed_utf8_as_arrow_does_and_nulls_as_empty():
    # Arrow lowercases the overlong "\xc1\x81" to "a", a word of its own (the signature kernel's rule)
    texts = string_array([b"caf\xc3\xa9 ONE two \xc1\x81 three four", b"caf\xc3\xa9 one TWO a three four five"])
    got = exact_jaccard(texts, pa.array(["café one two a three four", None]), ngram=2, char_ngrams=False)
    assert list(got) == [1.0, 0.0]
    with pytest.raises(pa.ArrowInvalid):  # where Arrow cannot read the text, neither can the kernel
        exact_jaccard(string_array([b"one \xff two"]), pa.array(["one two"]), ngram=2, char_ngrams=False)


def signed_alone(texts, **params):
    """Each text of ``texts`` signed in a call of its own, where no memo can serve it."""
    outs = [compute_signatures(texts.slice(i, 1), **params) for i in range(len(texts))]
    return [np.concatenate([getattr(out, name) for out in outs]) for name in SIGNATURE_FIELDS]


SIGNATURE_FIELDS = ("exact_hash_hi", "exact_hash_lo", "n_shingles", "normalized_length", "signatures", "lengths")


@pytest.mark.parametrize("slots", [4, 1024])
def test_a_memo_gives_repeated_texts_the_outputs_of_a_fresh_run_and_signs_each_once(slots):
    """Batches drawn from a few texts (a malformed one that Arrow lowercases, empty ones, nulls)
    through one memo: every output equals the text's own run; with room for all, each distinct
    text was signed once. Four slots hold two texts, so that memo keeps forgetting."""
    rng = np.random.default_rng(3)
    pool = [t.encode() for t in random_texts(rng, 12)] + [b"", b"Caf\xc3\xa9 " + MALFORMED[3] + b" x"]
    a, b = permutations(16, seed=5)
    params = dict(ngram=3, char_ngrams=False, a=a, b=b)
    memo = SignatureMemo(16, slots)
    signed = set()
    for _ in range(6):
        picks = rng.integers(0, len(pool), 25)
        texts = pc.if_else(pa.array(rng.random(25) < 0.1), pa.scalar(None, pa.string()),
                           string_array([pool[k] for k in picks]))
        out = compute_signatures(texts, **params, memo=memo)
        for name, expected in zip(SIGNATURE_FIELDS, signed_alone(texts, **params)):
            np.testing.assert_array_equal(getattr(out, name), expected, err_msg=name)
        signed |= {pool[k] for k, valid in zip(picks, texts.is_valid().to_pylist()) if valid}
    if slots >= 2 * len(pool):
        assert len(memo) == len(signed)


def test_a_batch_with_repeats_and_no_memo_matches_fresh_runs_and_arrows_lengths():
    values = [b"one two three four", MALFORMED[0] + b" caf\xc3\xa9", b"one two three four", b""]
    texts = string_array(values)
    a, b = permutations(16, seed=5)
    out = compute_signatures(texts, ngram=2, char_ngrams=False, a=a, b=b)
    for name, expected in zip(SIGNATURE_FIELDS, signed_alone(texts, ngram=2, char_ngrams=False, a=a, b=b)):
        np.testing.assert_array_equal(getattr(out, name), expected, err_msg=name)
    np.testing.assert_array_equal(out.lengths, pc.utf8_length(texts).to_numpy())


def test_process_memo_is_kept_for_a_hash_family_and_replaced_for_another():
    a, b = permutations(16, seed=5)
    memo = process_memo(a, b, 5, False)
    assert process_memo(a.copy(), b.copy(), 5, False) is memo
    assert process_memo(a, b, 4, False) is not memo
    assert process_memo(*permutations(16, seed=6), 5, False) is not memo
