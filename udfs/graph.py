"""Connected components of an edge list held in memory, for graphs small enough for one task."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def node_components(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nodes, index, component)`` of the undirected edges ``src[i] - dst[i]``: every node once,
    sorted; the position in ``nodes`` of each endpoint (all of ``src``, then all of ``dst``); and
    each node's component label (SciPy's, ``0..k-1``)."""
    nodes, index = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n, m = len(nodes), len(src)
    graph = coo_matrix((np.ones(m, dtype=np.int8), (index[:m], index[m:])), shape=(n, n))
    return nodes, index, connected_components(graph, directed=False)[1]


def component_roots(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(nodes, roots)``: every node of the undirected edges ``src[i] - dst[i]`` once, sorted, and
    the smallest node of its component.

    Nodes are numbered ``0..n-1`` by their rank (``np.unique``), so the smallest node of a
    component is the one of smallest number, found by ``np.minimum.at`` over the numbers.
    """
    nodes, _, component = node_components(src, dst)
    smallest = np.full(component.max(initial=-1) + 1, len(nodes), dtype=np.int64)
    np.minimum.at(smallest, component, np.arange(len(nodes)))
    return nodes, nodes[smallest[component]]
