"""Connected components and survivor choice at scale, with a hub, checked against scipy.

    python benchmarks/cc_scale.py --nodes 1000000 --work /tmp/cc-scale [--hub-degree 10000 ...]
    python benchmarks/cc_scale.py --nodes 1000000 --giant 600000 --hub-neighbours 500000

The graph has ``--nodes`` nodes with randomly scrambled 63-bit ids:

* one component of ``--giant`` nodes around a hub: the hub is linked to ``--hub-neighbours``
  of them (default ``giant / 2``), the others hang off random earlier members (a tree);
* one chain (a path) of ``--chain`` nodes, the slow case for label propagation;
* the rest in small components of 2-5 nodes.

For each ``--hub-degree`` given (a value above every key's row count, e.g. 10**9, turns
broadcasting off) the project's ``connected_components`` and ``cluster_survivors`` run in
``local[2]`` and every label is compared with ``scipy.sparse.csgraph.connected_components``
(the run fails on a difference). Reported per run: rounds, seconds, clusters, and for the CC
and survivor phases separately, from each task of each stage in Spark's status API, figures
that do not depend on the machine's load: the most shuffle records and bytes one task read,
that task against the median task of the same shuffle, the largest excess of a task over that
median (about the largest key's rows when a key lands in one task), total shuffle bytes, and
the largest peak execution memory of a task. ``--stage-log`` writes each shuffle's per-task
records.
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
from schemas.dedup import DOC_ID  # noqa: E402


def make_graph(nodes: int, giant: int, hub_neighbours: int, chain: int,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, edges)``: edges as rows of node ids; node ``ids[0]`` is the hub."""
    if not 0 < hub_neighbours < giant or giant + chain > nodes:
        raise ValueError("need 0 < hub_neighbours < giant and giant + chain <= nodes")
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, 2**63 - 1, size=int(nodes * 1.01), dtype=np.int64))[:nodes]
    ids = ids[rng.permutation(len(ids))]
    hub_leaves = np.arange(1, hub_neighbours + 1)
    tree = np.arange(hub_neighbours + 1, giant)
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


def _get(spark, path: str):
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{app}/{path}") as response:
        return json.load(response)


def next_stage_id(spark) -> int:
    """The id the next stage will get, once the status store has caught up with the last job."""
    for _ in range(60):  # the status API is fed by an asynchronous listener
        stages = _get(spark, "stages")
        if not any(s["status"] == "ACTIVE" for s in stages):
            break
        time.sleep(0.5)
    time.sleep(1.0)
    return max((s["stageId"] for s in _get(spark, "stages")), default=-1) + 1


def shuffle_blocks(tasks: list[dict], partitions: int) -> list[list[dict]]:
    """The tasks of a stage grouped by the shuffle they read.

    With coalescing and the local shuffle reader off, a stage reading one shuffle (or two
    co-partitioned ones, a sort-merge join) has one task per hash partition. A stage that is a
    union reads several shuffles one after the other, ``partitions`` tasks each, plus tasks
    that read files and no shuffle; comparing a task with the median of the whole stage would
    compare partitions of different shuffles, so the blocks are compared separately.
    """
    reading = sorted((t for t in tasks if t["taskMetrics"]["shuffleReadMetrics"]["recordsRead"]),
                     key=lambda t: t["index"])
    if len(reading) > partitions and len(reading) % partitions == 0:
        return [reading[i:i + partitions] for i in range(0, len(reading), partitions)]
    return [reading] if reading else []


def shuffle_skew(spark, first: int, last: int, log=None, **tags) -> dict:
    """Per-task shuffle reads of stages ``first <= id < last`` (from each stage's task list).

    ``max_task_records`` / ``max_task_bytes``: the most shuffle records / bytes one task read;
    ``ratio``: that task's records over the median of the tasks reading the same shuffle
    (:func:`shuffle_blocks`); ``worst_ratio``: the largest such max/median of any shuffle whose
    largest task read >= 10,000 records; ``max_excess_records``: the most records one task read
    beyond the median of its shuffle's tasks — about the largest key's rows when a key with
    many rows lands in one task. Shuffle bytes are summed over the stages; peak memory is the
    largest ``peakExecutionMemory`` of any task.
    """
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    out = {"stages": 0, "tasks": 0, "max_task_records": 0, "max_task_bytes": 0, "ratio": None,
           "worst_ratio": 0.0, "max_excess_records": 0, "shuffle_read_bytes": 0, "shuffle_write_bytes": 0,
           "peak_task_execution_memory_mb": 0.0}
    peak = 0
    for stage in _get(spark, "stages"):
        if not first <= stage["stageId"] < last or stage["status"] != "COMPLETE":
            continue
        out["shuffle_write_bytes"] += stage["shuffleWriteBytes"]
        tasks = _get(spark, f"stages/{stage['stageId']}/{stage['attemptId']}/taskList?length=100000")
        tasks = [t for t in tasks if t["status"] == "SUCCESS" and "taskMetrics" in t]
        peak = max([peak] + [t["taskMetrics"]["peakExecutionMemory"] for t in tasks])
        blocks = shuffle_blocks(tasks, partitions)
        if not blocks:
            continue
        out["stages"] += 1
        for block in blocks:
            reads = [t["taskMetrics"]["shuffleReadMetrics"] for t in block]
            records = np.array([r["recordsRead"] for r in reads])
            size = np.array([r["localBytesRead"] + r["remoteBytesRead"] for r in reads])
            out["tasks"] += len(block)
            out["shuffle_read_bytes"] += int(size.sum())
            out["max_task_bytes"] = max(out["max_task_bytes"], int(size.max()))
            median = float(np.median(records))
            ratio = round(records.max() / max(median, 1.0), 2)
            if records.max() > out["max_task_records"]:
                out.update(max_task_records=int(records.max()), ratio=ratio, median_task_records=int(median),
                           stage=stage["stageId"], stage_tasks=len(tasks))
            if records.max() - median > out["max_excess_records"]:
                out.update(max_excess_records=int(records.max() - median), excess_stage=stage["stageId"])
            if records.max() >= 10_000 and len(block) >= 2:
                out["worst_ratio"] = max(out["worst_ratio"], ratio)
            if log:
                log.write(json.dumps({**tags, "stage": stage["stageId"], "stage_tasks": len(tasks),
                                      "records": records.tolist(), "bytes": int(size.sum())}) + "\n")
    out["peak_task_execution_memory_mb"] = round(peak / 2**20, 1)
    return out


def run(spark, edges_path: str, work: str, hub_degree: int, log=None) -> tuple[dict, dict]:
    def checkpoint(df, name):
        path = os.path.join(work, name)
        df.write.parquet(path)
        return spark.read.parquet(path)

    first_stage = next_stage_id(spark)
    edges = spark.read.parquet(edges_path)
    start = time.perf_counter()
    result = connected_components(edges, checkpoint, max_rounds=100, hub_degree=hub_degree)
    labels = checkpoint(result.labels, "labels")
    cc_seconds = time.perf_counter() - start
    cc_end = next_stage_id(spark)
    start = time.perf_counter()
    ranks = labels.select(DOC_ID, (-labels[DOC_ID] % 1000).alias("rank"))
    survivors = checkpoint(cluster_survivors(labels, ranks, hub_degree), "survivors")
    survivor_seconds = time.perf_counter() - start
    survivors_end = next_stage_id(spark)
    table = pq.read_table(os.path.join(work, "labels"))
    spark_labels = dict(zip(table.column(DOC_ID).to_pylist(), table.column("root").to_pylist()))
    figures = {"hub_degree": hub_degree, "rounds": result.rounds, "cc_seconds": round(cc_seconds, 1),
               "survivor_seconds": round(survivor_seconds, 1),
               "clusters": survivors.select("survivor").distinct().count(),
               "cc_shuffle": shuffle_skew(spark, first_stage, cc_end, log, hub_degree=hub_degree, phase="cc"),
               "survivors_shuffle": shuffle_skew(spark, cc_end, survivors_end, log, hub_degree=hub_degree,
                                                 phase="survivors")}
    return figures, spark_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--giant", type=int, default=100_000)
    parser.add_argument("--hub-neighbours", type=int, default=None,
                        help="members of the giant component linked directly to the hub (default giant / 2)")
    parser.add_argument("--chain", type=int, default=100_000)
    parser.add_argument("--hub-degree", type=int, nargs="+", default=[10_000, 10**9])
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--aqe-task-layout", action="store_true",
                        help="keep adaptive execution's partition coalescing and local shuffle reader (the "
                             "project's defaults); off by default here so that every task reading a shuffle "
                             "reads exactly one hash partition, and a hub's partition shows in the figures")
    parser.add_argument("--stage-log",
                        help="write one JSON line per shuffle read (its tasks' records, in partition order)")
    parser.add_argument("--work", default="/tmp/cc-scale")
    args = parser.parse_args()
    hub_neighbours = args.giant // 2 if args.hub_neighbours is None else args.hub_neighbours
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    ids, edges = make_graph(args.nodes, args.giant, hub_neighbours, args.chain)
    edges_path = os.path.join(args.work, "edges.parquet")
    pq.write_table(pa.table({"src": edges[:, 0], "dst": edges[:, 1]}), edges_path)
    start = time.perf_counter()
    expected = scipy_roots(ids, edges)
    scipy_seconds = time.perf_counter() - start
    # Console progress bars off, and enough stages kept in the status store for a whole run.
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--conf spark.ui.showConsoleProgress=false "
                          "--conf spark.ui.retainedStages=20000 --conf spark.ui.retainedJobs=20000 pyspark-shell")
    spark = get_spark(SparkConfig(master="local[2]", shuffle_partitions=args.shuffle_partitions,
                                  driver_memory=args.driver_memory, log_level="ERROR"))
    for key in ("spark.sql.adaptive.coalescePartitions.enabled", "spark.sql.adaptive.localShuffleReader.enabled"):
        spark.conf.set(key, str(args.aqe_task_layout).lower())
    stage_log = open(args.stage_log, "w") if args.stage_log else None
    hub_degree_in_graph = int(np.count_nonzero(edges == ids[0]))
    print(json.dumps({"nodes": len(ids), "edges": len(edges), "giant": args.giant,
                      "hub_neighbours": hub_degree_in_graph, "chain": args.chain,
                      "shuffle_partitions": args.shuffle_partitions, "aqe_task_layout": args.aqe_task_layout,
                      "scipy_seconds": round(scipy_seconds, 2),
                      "load_average": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    for hub_degree in args.hub_degree:
        work = os.path.join(args.work, f"hub-{hub_degree}")
        os.makedirs(work)
        figures, labels = run(spark, edges_path, work, hub_degree, stage_log)
        figures["equals_scipy"] = labels == expected
        figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(figures), flush=True)
        if stage_log:
            stage_log.flush()
        if not figures["equals_scipy"]:
            sys.exit(f"labels differ from scipy with hub_degree={hub_degree}")


if __name__ == "__main__":
    main()
