"""Driver memory against corpus size: the dedup job on a real multi-process cluster.

    python benchmarks/dedup_memory.py /tmp/dedup-bench/subset-128mb /tmp/dedup-bench/corpus-1024mb

In ``local[N]`` the executors live inside the driver JVM, so its resident memory mixes the
driver's own (plans, task bookkeeping, anything collected) with the executors' heaps. Here each
corpus is deduplicated by ``python jobs/dedup.py --master local-cluster[2,1,MB]``, where the two
executors are separate JVMs, and the peak resident memory of the driver JVM, of the executor
JVMs and of the Python workers is sampled every 0.2 s. A driver that collects nothing shows
the same peak whatever the corpus size; the executors' peaks are bounded by their heap.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil
import pyspark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "jobs", "dedup.py")


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # exited since it was listed
        return ""


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def peak_memory(job: subprocess.Popen) -> dict[str, int]:
    """Sample the job's process tree until it exits; peak RSS per role, in MB."""
    me = psutil.Process(job.pid)
    peaks = {"driver_jvm": 0, "executor_jvms": 0, "python_workers": 0}
    while job.poll() is None:
        now = dict.fromkeys(peaks, 0)
        for p in me.children(recursive=True):
            line = _cmdline(p)
            if "CoarseGrainedExecutorBackend" in line:
                now["executor_jvms"] += _rss(p)
            elif "java" in line.split(" ")[0]:
                now["driver_jvm"] += _rss(p)
            elif "pyspark" in line:
                now["python_workers"] += _rss(p)
        peaks = {k: max(peaks[k], now[k]) for k in peaks}
        time.sleep(0.2)
    return {k: v // 2**20 for k, v in peaks.items()}


def corpus_mb(path: str) -> float:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(path, format="parquet").to_table(columns=["content"])
    return round(pc.sum(pc.binary_length(table.column("content").cast("binary"))).as_py() / 1e6, 1)


def run(corpus: str, executor_mb: int, driver_memory: str) -> dict:
    spark_work = os.path.join(os.path.dirname(pyspark.__file__), "work")
    before = set(os.listdir(spark_work)) if os.path.isdir(spark_work) else set()
    out = os.path.join(tempfile.mkdtemp(prefix="dedup-memory-"), "out")
    cmd = [sys.executable, JOB, "--input", corpus, "--output", out, "--master",
           f"local-cluster[2,1,{executor_mb}]", "--shuffle-partitions", "16", "--driver-memory", driver_memory]
    env = dict(os.environ, PYTHONPATH=ROOT, PYSPARK_PYTHON=sys.executable)
    start = time.perf_counter()
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        peaks = peak_memory(job)
        stderr = job.stderr.read().decode(errors="replace")
        if job.wait() != 0:
            raise RuntimeError(f"job failed on {corpus}:\n{stderr[-3000:]}")
        seconds = time.perf_counter() - start
        stats = json.load(open(os.path.join(out, "stats.json")))
    finally:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)
        for app in (set(os.listdir(spark_work)) - before) if os.path.isdir(spark_work) else ():
            shutil.rmtree(os.path.join(spark_work, app), ignore_errors=True)
    return {"corpus": corpus, "texts_mb": corpus_mb(corpus), "documents": stats["documents"],
            "seconds": round(seconds, 1), "peak_rss_mb": peaks}


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
