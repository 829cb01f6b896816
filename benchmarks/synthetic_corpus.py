"""Synthetic corpora with planted near duplicates and exact ground truth.

A corpus is a set of *families*: one random base document and ``copies`` variants made by
editing a fraction ``edit_rate`` of its words (substitute, insert or delete, equally likely).
Some families are exact copies; very short documents (fewer words than the shingle size) are
planted as their own families, because those are what naive MinHash collapses; and
*boilerplate* families share one long header (like a licence) with distinct bodies, so that
documents of different families reach Jaccard ≈ 0.55 — enough for LSH to link them by
chance, never enough to be duplicates. Unverified LSH chains such families together and
deletes all but one; the verified pipeline must not.

The ground truth is computed independently of the pipeline: word 5-gram sets from Python's
``re`` and exact Jaccard similarity between every pair inside a family (pairs across families
share at most the boilerplate header and stay below J ≈ 0.6).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np


@dataclass
class SyntheticCorpus:
    ids: list[int]
    texts: list[str]
    family: list[int]  # family index of each document

    def true_pairs(self, threshold: float, ngram: int = 5) -> set[tuple[int, int]]:
        """Pairs ``(i, j)`` (ids, ``i < j``) whose exact word n-gram Jaccard reaches ``threshold``."""
        members: dict[int, list[int]] = {}
        for doc, fam in enumerate(self.family):
            members.setdefault(fam, []).append(doc)
        pairs = set()
        shingles = [word_shingles(t, ngram) for t in self.texts]
        for docs in members.values():
            for a, b in itertools.combinations(docs, 2):
                if jaccard(shingles[a], shingles[b]) >= threshold:
                    pairs.add((min(self.ids[a], self.ids[b]), max(self.ids[a], self.ids[b])))
        return pairs


def word_shingles(text: str, ngram: int) -> set[tuple[str, ...]]:
    tokens = re.findall(r"\w+", text.lower())
    if 0 < len(tokens) < ngram:
        return {tuple(tokens)}
    return {tuple(tokens[i:i + ngram]) for i in range(len(tokens) - ngram + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 10, size=size)
    return ["".join(rng.choice(letters, n)) for n in lengths]


def _edit(words: list[str], rate: float, rng: np.random.Generator, vocab: list[str]) -> list[str]:
    out = []
    for w in words:
        if rng.random() >= rate:
            out.append(w)
            continue
        op = rng.integers(3)
        if op == 0:
            out.append(vocab[rng.integers(len(vocab))])
        elif op == 1:
            out.extend([w, vocab[rng.integers(len(vocab))]])
    return out


def _version_chain(rng: np.random.Generator, vocab: list[str], versions: int,
                   edit_rates: tuple[float, float], words: tuple[int, int]) -> list[list[str]]:
    """Successive versions of one document, each an edit of the one before.

    An edit rate ``p`` per word keeps about ``(1-p)**5`` of the word 5-grams, so rates of
    2–6 % put consecutive versions at Jaccard ≈ 0.6–0.8: pairs on both sides of a 0.7
    threshold, while versions two or more steps apart mostly fall below it — the shape of a
    file's release history, where a star on the oldest version would miss the later links.
    """
    chain = [[vocab[i] for i in rng.integers(len(vocab), size=rng.integers(*words))]]
    for _ in range(versions - 1):
        chain.append(_edit(chain[-1], float(rng.uniform(*edit_rates)), rng, vocab))
    return chain


def generate(n_families: int = 300, copies: int = 3, edit_rates: tuple[float, ...] = (0.01, 0.03, 0.08),
             short_docs: int = 100, exact_families: int = 30, boilerplate_families: int = 40,
             words: tuple[int, int] = (80, 400), seed: int = 0, vocab_size: int = 50_000,
             version_chains: int = 0, chain_versions: int = 6,
             chain_edit_rates: tuple[float, float] = (0.02, 0.06)) -> SyntheticCorpus:
    """Families ``[0, exact_families)`` are exact copies, the last ``boilerplate_families`` share
    a 200-word header before an 80-word body; then ``version_chains`` families of
    ``chain_versions`` successive versions (:func:`_version_chain`) and ``short_docs`` singleton
    short documents."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng, vocab_size)
    header = [vocab[i] for i in rng.integers(len(vocab), size=200)]
    texts, family = [], []
    for fam in range(n_families):
        if fam >= n_families - boilerplate_families:
            base = header + [vocab[i] for i in rng.integers(len(vocab), size=80)]
        else:
            base = [vocab[i] for i in rng.integers(len(vocab), size=rng.integers(*words))]
        texts.append(" ".join(base))
        family.append(fam)
        for c in range(copies):
            if fam < exact_families:
                variant = base
            else:
                variant = _edit(base, edit_rates[c % len(edit_rates)], rng, vocab)
            suffix = "" if fam < exact_families else "." * (c % 2)
            texts.append(" ".join(variant).capitalize() + suffix)
            family.append(fam)
    for c in range(version_chains):
        for version in _version_chain(rng, vocab, chain_versions, chain_edit_rates, words):
            texts.append(" ".join(version))
            family.append(n_families + c)
    for k in range(short_docs):
        texts.append(" ".join(vocab[i] for i in rng.integers(len(vocab), size=1 + k % 4)))
        family.append(n_families + version_chains + k)
    order = rng.permutation(len(texts))
    texts = [texts[i] for i in order]
    family = [family[i] for i in order]
    return SyntheticCorpus(ids=list(range(len(texts))), texts=texts, family=family)
