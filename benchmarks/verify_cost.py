"""What exact verification costs: the same job with ``--verify exact`` and ``--verify estimate``.

    python benchmarks/verify_cost.py --corpus /work/data/real-large.parquet --id-column id --rounds 2

Both modes run in one process and one Spark session (``local[2]``, default job settings), after
one warm-up run, alternating ``estimate, exact, exact, estimate, …`` so that a machine
getting busier or quieter weighs on both alike. Reports each run's wall seconds and stage
seconds, the median of each mode and their ratio, and what exact verification did
(``stats.json: exact_verification``).

On a shared machine wall time is mostly other jobs' doing; each run also reports the CPU
seconds of this process tree (driver, JVM, Python workers) and the load average, and the
CPU ratio of the medians: work the job did, whatever else was running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.process_tree import tree_cpu_seconds  # noqa: E402
from pipelines.config import DedupConfig, InputConfig, LshConfig, SparkConfig, VerifyMode  # noqa: E402
from pipelines.dedup.pipeline import run_dedup  # noqa: E402
from pipelines.spark_session import get_spark  # noqa: E402


def timed_run(spark, corpus: str, id_column: str | None, mode: VerifyMode, out: str) -> dict:
    """One run from scratch: no output and no staging work of an earlier run to resume from."""
    parent = os.path.dirname(out)
    for name in os.listdir(parent) if os.path.isdir(parent) else []:
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    cfg = DedupConfig(input=InputConfig(path=corpus, id_column=id_column), output=out, lsh=LshConfig(verify=mode))
    start, cpu = time.perf_counter(), tree_cpu_seconds(os.getpid())
    stats = run_dedup(cfg, spark=spark).stats
    return {"mode": mode.value, "seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(tree_cpu_seconds(os.getpid()) - cpu, 1), "load_average": round(os.getloadavg()[0], 1),
            "stages": {k: round(v, 1) for k, v in stats["stage_seconds"].items()},
            "kept": stats["kept"], "near": stats["near_duplicates"], "exact_verification": stats["exact_verification"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--id-column", default=None)
    p.add_argument("--rounds", type=int, default=2, help="pairs of runs per mode after the warm-up")
    p.add_argument("--work", default="/tmp/verify-cost")
    args = p.parse_args()
    spark = get_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR"))
    out = os.path.join(args.work, "out")
    timed_run(spark, args.corpus, args.id_column, VerifyMode.ESTIMATE, out)  # warm-up: JIT, caches
    order = [VerifyMode.ESTIMATE, VerifyMode.EXACT, VerifyMode.EXACT, VerifyMode.ESTIMATE] * args.rounds
    runs = []
    for mode in order[:2 * args.rounds]:
        runs.append(timed_run(spark, args.corpus, args.id_column, mode, out))
        print(json.dumps(runs[-1]), flush=True)
    seconds, cpu = ({m.value: statistics.median(r[key] for r in runs if r["mode"] == m.value)
                     for m in (VerifyMode.ESTIMATE, VerifyMode.EXACT)} for key in ("seconds", "cpu_seconds"))
    print(json.dumps({"median_seconds": seconds, "median_cpu_seconds": cpu,
                      "exact_over_estimate": round(seconds["exact"] / seconds["estimate"], 3),
                      "exact_over_estimate_cpu": round(cpu["exact"] / cpu["estimate"], 3)}))


if __name__ == "__main__":
    main()
