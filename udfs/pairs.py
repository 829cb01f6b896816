"""Pairs of documents named by id, found among the rows of a task that hold those documents."""

from __future__ import annotations

import numpy as np


def pair_rows(doc_ids: np.ndarray, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)``: for each pair ``p``, a row ``k`` with ``doc_ids[k] == src[p]`` and one with
    ``doc_ids[k] == dst[p]`` (an id may repeat, its rows holding the same document: the first is
    taken). Raises ``KeyError`` if a pair names an id that no row holds."""
    ids, first = np.unique(np.asarray(doc_ids, dtype=np.int64), return_index=True)
    at_src, at_dst = np.searchsorted(ids, src), np.searchsorted(ids, dst)
    found = np.concatenate([at_src, at_dst])
    if len(found) and (found.max() >= len(ids) or np.any(ids[found] != np.concatenate([src, dst]))):
        raise KeyError("a pair names a document that no row holds")
    return first[at_src], first[at_dst]
