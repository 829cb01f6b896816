"""Dedup cost against corpus size: fresh-JVM ``spark-submit`` runs with per-stage seconds and bytes.

    python benchmarks/dedup_scaling.py --source /work/data/real-large.parquet --gb 0.25 0.5 1 2 4 \\
        --work /tmp/dedup-scaling
    python benchmarks/dedup_scaling.py --corpus samples/hf_public_repos_sample.parquet --work /tmp/dedup-scaling

Each point is one ``spark-submit --master local[2] jobs/dedup.py --input SLICE --output DIR``
(or, ``--launcher python``, the README's ``python jobs/dedup.py``, which starts Spark with the
job's own driver settings) with Spark's and the job's default settings (``--submit-arg`` and
``--job-arg`` add options), in a fresh JVM, timed from the command's start to its exit. A slice of ``--gb G`` is the prefix of
``--source`` whose texts first reach ``G * 10**9`` bytes of UTF-8 (the real corpus is ordered
round-robin over packages by release, so a prefix has the whole corpus's structure), written
once with the source's row-group size and reused.

Per point: wall seconds, MB/s and seconds per GB; peak resident memory of the whole process
tree (``spark-submit``'s JVM and the Python workers, summed, sampled every 0.2 s) and its CPU
seconds (the work done, less sensitive to other load than wall time); the load average at the
start; ``stats.json``'s stage seconds and counts; and, from Spark's event log,
per stage of the job (its ``setJobGroup``): Spark jobs, stages, tasks, the JVM executors' CPU
seconds (Python workers' excluded), shuffle-write bytes and records, and output bytes. Those byte and row figures per input GB are what a
projection to larger corpora is built from. Results are JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.process_tree import TreeSampler, is_jvm  # noqa: E402

JOB = os.path.join(ROOT, "jobs", "dedup.py")
GROUP_PREFIX = "corpus-prep.dedup."


def text_bytes(table: pa.Table, column: str = "content") -> int:
    return pc.sum(pc.binary_length(table.column(column).cast(pa.binary()))).as_py() or 0


def write_slice(source: str, gb: float, directory: str) -> str:
    """The prefix of ``source`` whose texts reach ``gb`` GB, as one Parquet file (reused when present)."""
    out = os.path.join(directory, f"slice-{gb:g}gb.parquet")
    if os.path.exists(out):
        return out
    os.makedirs(directory, exist_ok=True)
    reader = pq.ParquetFile(source)
    limit, total = gb * 1e9, 0
    row_group_rows = reader.metadata.row_group(0).num_rows
    tmp = out + ".tmp"
    with pq.ParquetWriter(tmp, reader.schema_arrow, compression="zstd") as writer:
        for i in range(reader.num_row_groups):
            group = reader.read_row_group(i)
            sizes = pc.binary_length(group.column("content").cast(pa.binary())).to_numpy(zero_copy_only=False)
            cumulative = total + sizes.cumsum()
            take = int((cumulative < limit).sum()) + 1
            writer.write_table(group.slice(0, take), row_group_size=row_group_rows)
            total = int(cumulative[min(take, len(cumulative)) - 1])
            if total >= limit:
                break
    if total < limit:
        os.remove(tmp)
        raise SystemExit(f"{source} holds {total / 1e9:.2f} GB of text, less than {gb:g} GB")
    os.rename(tmp, out)
    return out


def role(process: psutil.Process) -> str:
    """``jvm``, ``python-workers`` (PySpark's daemon and workers) or ``driver`` (the job's Python):
    every process of the job's tree is counted."""
    if is_jvm(process):
        return "jvm"
    line = process.cmdline()
    return "python-workers" if "pyspark.daemon" in line or "pyspark.worker" in line else "driver"


def stage_metrics(event_log: str) -> dict[str, dict]:
    """Per job group (the dedup stage's name): Spark jobs, stages, tasks and summed task metrics."""
    group_of_stage, per_group = {}, defaultdict(lambda: defaultdict(float))
    with open(event_log) as fh:
        for line in fh:
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart":
                group = (event.get("Properties") or {}).get("spark.jobGroup.id") or "(none)"
                group = group.removeprefix(GROUP_PREFIX)
                per_group[group]["jobs"] += 1
                for stage in event["Stage IDs"]:
                    group_of_stage.setdefault(stage, group)
            elif kind == "SparkListenerStageCompleted":
                info = event["Stage Info"]
                group = group_of_stage.get(info["Stage ID"], "(none)")
                per_group[group]["stages"] += 1
                per_group[group]["tasks"] += info["Number of Tasks"]
            elif kind == "SparkListenerTaskEnd" and event.get("Task Metrics"):
                group = group_of_stage.get(event["Stage ID"], "(none)")
                m = event["Task Metrics"]
                totals = per_group[group]
                totals["jvm_cpu_s"] += m["Executor CPU Time"] / 1e9
                totals["shuffle_write_bytes"] += m["Shuffle Write Metrics"]["Shuffle Bytes Written"]
                totals["shuffle_write_records"] += m["Shuffle Write Metrics"]["Shuffle Records Written"]
                totals["output_bytes"] += m["Output Metrics"]["Bytes Written"]
    return {g: {k: (round(v, 1) if k == "jvm_cpu_s" else int(v)) for k, v in t.items()} for g, t in per_group.items()}


def command(launcher: str, corpus: str, out: str, events: str, submit_args: list[str],
            job_args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The job's command line and environment: ``spark-submit --master local[2] jobs/dedup.py …``,
    or ``python jobs/dedup.py … --master local[2]`` (the job starts Spark itself, with its own
    driver settings), both writing an uncompressed event log to ``events``."""
    event_log = ["--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir=file://{events}",
                 "--conf", "spark.eventLog.rolling.enabled=false", "--conf", "spark.eventLog.compress=false"]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYTHONPATH=ROOT)
    job = [JOB, "--input", corpus, "--output", out, *job_args]
    if launcher == "python":
        env["PYSPARK_SUBMIT_ARGS"] = " ".join([*event_log, *submit_args, "pyspark-shell"])
        return [sys.executable, *job, "--master", "local[2]"], env
    spark_submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    return [spark_submit, "--master", "local[2]", *event_log, *submit_args, *job], env


def run_point(corpus: str, work: str, label: str, launcher: str, submit_args: list[str],
              job_args: list[str]) -> dict:
    out = os.path.join(work, f"out-{label}")
    events = os.path.join(work, f"events-{label}")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(events, ignore_errors=True)
    os.makedirs(events)
    cmd, env = command(launcher, corpus, out, events, submit_args, job_args)
    load = os.getloadavg()
    start = time.perf_counter()
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    with TreeSampler(job.pid, role) as sampler:
        _, stderr = job.communicate()
        wall = time.perf_counter() - start
    if job.returncode != 0:
        raise RuntimeError(f"job failed on {corpus}:\n{stderr.decode(errors='replace')[-4000:]}")
    stats = json.load(open(os.path.join(out, "stats.json")))
    mb = text_bytes(pq.read_table(corpus, columns=["content"])) / 1e6
    logs = glob.glob(os.path.join(events, "*"))
    spark = stage_metrics(logs[0]) if len(logs) == 1 else {}
    shutil.rmtree(out, ignore_errors=True)
    return {
        "corpus": corpus, "launcher": launcher, "texts_mb": round(mb, 1), "documents": stats["documents"],
        "load_at_start": [round(x, 2) for x in load], "wall_s": round(wall, 1), "mb_s": round(mb / wall, 1),
        "s_per_gb": round(wall / (mb / 1000), 1), "peak_tree_rss_mb": sampler.peak // 2**20,
        "peak_rss_mb_by_role": sampler.peak_mb(),
        "tree_cpu_s": round(sampler.cpu_seconds, 1),
        "stage_seconds": stats["stage_seconds"],
        "counts": {k: stats[k] for k in ("exact_duplicates", "near_duplicates", "kept", "candidate_edges",
                                         "verified_edges", "cc_rounds", "largest_cluster")},
        "spark": spark,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", help="Parquet corpus (content column) to slice")
    p.add_argument("--gb", type=float, nargs="*", default=[], help="slice sizes in GB of text")
    p.add_argument("--corpus", nargs="*", default=[], help="corpora to run as they are")
    p.add_argument("--work", default="/tmp/dedup-scaling")
    p.add_argument("--launcher", choices=["spark-submit", "python"], default="spark-submit",
                   help="spark-submit --master local[2] jobs/dedup.py, or python jobs/dedup.py --master local[2]")
    p.add_argument("--submit-arg", action="append", default=[], help="extra spark-submit argument (repeatable)")
    p.add_argument("--job-arg", action="append", default=[], help="extra jobs/dedup.py argument (repeatable)")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    points = [(c, os.path.basename(c).split(".")[0]) for c in args.corpus]
    if args.gb and not args.source:
        p.error("--gb needs --source")
    points += [(write_slice(args.source, gb, args.work), f"{gb:g}gb") for gb in args.gb]
    for corpus, label in points:
        print(json.dumps(run_point(corpus, args.work, label, args.launcher, args.submit_arg, args.job_arg)), flush=True)


if __name__ == "__main__":
    main()
