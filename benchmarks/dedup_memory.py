"""Driver memory against corpus size: the dedup job on a real multi-process cluster.

    python benchmarks/dedup_memory.py /tmp/dedup-bench/subset-128mb /tmp/dedup-bench/corpus-1024mb

In ``local[N]`` the executors live inside the driver JVM, so its resident memory mixes the
driver's own (plans, task bookkeeping, anything collected) with the executors' heaps. Here each
corpus is deduplicated by ``python jobs/dedup.py --master local-cluster[2,1,MB]``, where the two
executors are separate JVMs, and the peak resident memory of the driver JVM, of the executor
JVMs and of the Python workers is sampled every 0.2 s. A driver that collects nothing shows
the same peak whatever the corpus size; the executors' peaks are bounded by their heap.

Resident memory alone cannot show a driver that keeps more and more: a JVM grows towards its
heap limit whatever it keeps, and gives little back. So every JVM of the run also logs its
garbage collections (``JAVA_TOOL_OPTIONS=-Xlog:gc``), and the report gives the largest heap
*in use after a collection* per role: what the JVM still held once garbage was gone. That
figure grows with the corpus if the driver holds per-document state, and stays flat if not.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import psutil
import pyspark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.process_tree import TreeSampler, is_jvm  # noqa: E402

JOB = os.path.join(ROOT, "jobs", "dedup.py")


def role(process: psutil.Process) -> str | None:
    """``executor_jvms``, ``driver_jvm`` or ``python_workers``; the job's own Python is left out."""
    line = " ".join(process.cmdline())
    if is_jvm(process):
        return "executor_jvms" if "CoarseGrainedExecutorBackend" in line else "driver_jvm"
    return "python_workers" if "pyspark" in line else None


# A unified-logging GC line ends with "<before>M-><after>M(<heap>M) <pause>ms".
GC_LINE = re.compile(r"Pause .* (\d+)M->(\d+)M\((\d+)M\)")


def heap_after_gc(log_dir: str, jvm_roles: dict[int, str]) -> dict[str, dict[str, int]]:
    """Per role: the largest heap in use after a collection, collections counted, and the heap size, in MB."""
    found: dict[str, dict[str, int]] = {}
    for path in glob.glob(os.path.join(log_dir, "gc-*.log")):
        collections = [m for m in map(GC_LINE.search, open(path, errors="replace")) if m]
        if not collections:  # a JVM that never collected (spark-submit's launcher)
            continue
        name = jvm_roles.get(int(re.search(r"gc-(\d+)\.log", path).group(1)), "other_jvms")
        entry = found.setdefault(name, {"max_used_after_gc_mb": 0, "collections": 0, "heap_mb": 0})
        entry["max_used_after_gc_mb"] = max(entry["max_used_after_gc_mb"], *(int(m.group(2)) for m in collections))
        entry["collections"] += len(collections)
        entry["heap_mb"] = max(entry["heap_mb"], *(int(m.group(3)) for m in collections))
    return found


def corpus_mb(path: str) -> float:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(path, format="parquet").to_table(columns=["content"])
    return round(pc.sum(pc.binary_length(table.column("content").cast("binary"))).as_py() / 1e6, 1)


def run(corpus: str, executor_mb: int, driver_memory: str) -> dict:
    spark_work = os.path.join(os.path.dirname(pyspark.__file__), "work")
    before = set(os.listdir(spark_work)) if os.path.isdir(spark_work) else set()
    work = tempfile.mkdtemp(prefix="dedup-memory-")
    out = os.path.join(work, "out")
    cmd = [sys.executable, JOB, "--input", corpus, "--output", out, "--master",
           f"local-cluster[2,1,{executor_mb}]", "--shuffle-partitions", "16", "--driver-memory", driver_memory]
    env = dict(os.environ, PYTHONPATH=ROOT, PYSPARK_PYTHON=sys.executable,
               JAVA_TOOL_OPTIONS=f"-Xlog:gc:file={work}/gc-%p.log")
    start = time.perf_counter()
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        with TreeSampler(job.pid, role, include_root=False) as sampler:
            stderr = job.communicate()[1].decode(errors="replace")
        peaks = {name: sampler.peak_mb().get(name, 0) for name in ("driver_jvm", "executor_jvms", "python_workers")}
        if job.returncode != 0:
            raise RuntimeError(f"job failed on {corpus}:\n{stderr[-3000:]}")
        seconds = time.perf_counter() - start
        stats = json.load(open(os.path.join(out, "stats.json")))
        heap = heap_after_gc(work, sampler.role_of)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for app in (set(os.listdir(spark_work)) - before) if os.path.isdir(spark_work) else ():
            shutil.rmtree(os.path.join(spark_work, app), ignore_errors=True)
    return {"corpus": corpus, "texts_mb": corpus_mb(corpus), "documents": stats["documents"],
            "seconds": round(seconds, 1), "peak_rss_mb": peaks, "heap_after_gc": heap}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("corpora", nargs="+", help="Parquet corpora (a content column), smallest first")
    p.add_argument("--executor-mb", type=int, default=2048)
    p.add_argument("--driver-memory", default="2g")
    args = p.parse_args()
    for corpus in args.corpora:
        print(json.dumps(run(corpus, args.executor_mb, args.driver_memory)), flush=True)


if __name__ == "__main__":
    main()
