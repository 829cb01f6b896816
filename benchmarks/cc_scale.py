"""Connected components and survivor choice at scale, with a hub, checked against scipy.

    python benchmarks/cc_scale.py --nodes 1000000 --work /tmp/cc-scale [--hub-degree 10000 ...]

The graph has ``--nodes`` nodes with randomly scrambled 63-bit ids:

* one component of ``--giant`` nodes around a hub: the hub is linked to half of them, the other
  half hang off random earlier members (a tree), so the hub's degree is ``giant / 2``;
* one chain (a path) of ``--chain`` nodes, the slow case for label propagation;
* the rest in small components of 2-5 nodes.

For each ``--hub-degree`` given (a value above the hub's degree turns broadcasting off) the
project's ``connected_components`` and ``cluster_survivors`` run in ``local[2]`` and the labels
are compared with ``scipy.sparse.csgraph.connected_components``. Reported per run: rounds,
seconds, and from Spark's status API the slowest task of any stage against that stage's
median task, and the largest peak execution memory of a task — the figures a hub inflates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from scipy.sparse import coo_matrix  # noqa: E402
from scipy.sparse.csgraph import connected_components as scipy_components  # noqa: E402

from pipelines.config import SparkConfig  # noqa: E402
from pipelines.dedup.components import connected_components  # noqa: E402
from pipelines.dedup.survivors import cluster_survivors  # noqa: E402
from pipelines.spark_session import get_spark  # noqa: E402
from schemas.tables import DOC_ID  # noqa: E402


def make_graph(nodes: int, giant: int, chain: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, edges)``: edges as rows of node ids."""
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, 2**63 - 1, size=int(nodes * 1.01), dtype=np.int64))[:nodes]
    ids = ids[rng.permutation(len(ids))]
    hub_leaves = np.arange(1, giant // 2)
    tree = np.arange(giant // 2, giant)
    parts = [np.stack([np.zeros_like(hub_leaves), hub_leaves], 1),
             np.stack([tree, (rng.random(len(tree)) * tree).astype(np.int64)], 1)]
    path = np.arange(giant, giant + chain)
    parts.append(np.stack([path[:-1], path[1:]], 1))
    start = giant + chain
    while start < nodes:
        size = min(int(rng.integers(2, 6)), nodes - start)
        if size >= 2:
            members = np.arange(start, start + size)
            parts.append(np.stack([members[1:], members[rng.integers(0, np.arange(1, size))]], 1))
        start += size
    edges = np.concatenate(parts)
    return ids, ids[edges]


def scipy_roots(ids: np.ndarray, edges: np.ndarray) -> dict[int, int]:
    order = np.argsort(ids)
    index = order[np.searchsorted(ids, edges, sorter=order)]
    graph = coo_matrix((np.ones(len(edges)), (index[:, 0], index[:, 1])), shape=(len(ids),) * 2)
    _, comp = scipy_components(graph, directed=False)
    smallest = np.full(comp.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(smallest, comp, ids)
    linked = np.zeros(len(ids), bool)
    linked[index.reshape(-1)] = True
    return dict(zip(ids[linked].tolist(), smallest[comp[linked]].tolist()))


def task_skew(spark, since_stage: int) -> dict:
    """Slowest task / median task of the most skewed stage, and the largest task peak memory."""
    app = spark.sparkContext.applicationId
    base = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{app}/stages"
    worst = {"ratio": 0.0}
    peak = 0
    for stage in json.load(urllib.request.urlopen(base)):
        if stage["stageId"] < since_stage or stage["status"] != "COMPLETE" or stage["numTasks"] < 2:
            continue
        url = f"{base}/{stage['stageId']}/{stage['attemptId']}/taskSummary?quantiles=0.5,1.0"
        summary = json.load(urllib.request.urlopen(url))
        median, slowest = summary["executorRunTime"]
        peak = max(peak, summary["peakExecutionMemory"][1])
        ratio = slowest / max(median, 1.0)
        if slowest > 500 and ratio > worst["ratio"]:
            worst = {"ratio": round(ratio, 1), "slowest_task_ms": slowest, "median_task_ms": median,
                     "stage": stage["stageId"], "tasks": stage["numTasks"]}
    return {"most_skewed_stage": worst, "peak_task_execution_memory_mb": round(peak / 2**20, 1)}


def run(spark, edges_path: str, work: str, hub_degree: int) -> tuple[dict, dict]:
    def checkpoint(df, name):
        path = os.path.join(work, name)
        df.write.parquet(path)
        return spark.read.parquet(path)

    first_stage = len(json.load(urllib.request.urlopen(
        f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{spark.sparkContext.applicationId}/stages")))
    edges = spark.read.parquet(edges_path)
    start = time.perf_counter()
    result = connected_components(edges, checkpoint, max_rounds=100, hub_degree=hub_degree)
    labels = checkpoint(result.labels, "labels")
    cc_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ranks = labels.select(DOC_ID, (-labels[DOC_ID] % 1000).alias("rank"))
    survivors = checkpoint(cluster_survivors(labels, ranks, hub_degree), "survivors")
    survivor_seconds = time.perf_counter() - start
    table = pq.read_table(os.path.join(work, "labels"))
    spark_labels = dict(zip(table.column(DOC_ID).to_pylist(), table.column("root").to_pylist()))
    figures = {"hub_degree": hub_degree, "rounds": result.rounds, "cc_seconds": round(cc_seconds, 1),
               "survivor_seconds": round(survivor_seconds, 1), "clusters": survivors.select("survivor")
               .distinct().count(), **task_skew(spark, first_stage)}
    return figures, spark_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--giant", type=int, default=100_000)
    parser.add_argument("--chain", type=int, default=100_000)
    parser.add_argument("--hub-degree", type=int, nargs="+", default=[10_000, 10**9])
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--work", default="/tmp/cc-scale")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    ids, edges = make_graph(args.nodes, args.giant, args.chain)
    edges_path = os.path.join(args.work, "edges.parquet")
    pq.write_table(pa.table({"src": edges[:, 0], "dst": edges[:, 1]}), edges_path)
    start = time.perf_counter()
    expected = scipy_roots(ids, edges)
    scipy_seconds = time.perf_counter() - start
    spark = get_spark(SparkConfig(master="local[2]", shuffle_partitions=8, driver_memory=args.driver_memory,
                                  log_level="ERROR"))
    print(json.dumps({"nodes": len(ids), "edges": len(edges), "giant": args.giant, "chain": args.chain,
                      "scipy_seconds": round(scipy_seconds, 2)}))
    for hub_degree in args.hub_degree:
        work = os.path.join(args.work, f"hub-{hub_degree}")
        os.makedirs(work)
        figures, labels = run(spark, edges_path, work, hub_degree)
        figures["equals_scipy"] = labels == expected
        print(json.dumps(figures), flush=True)
        if not figures["equals_scipy"]:
            sys.exit(f"labels differ from scipy with hub_degree={hub_degree}")


if __name__ == "__main__":
    main()
