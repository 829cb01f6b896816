"""JSON Lines reading speed: ``read_corpus`` on a ~100 MB JSONL file with 1% malformed records.

    python benchmarks/json_read_bench.py --records 110000 --repeat 3 --work /tmp/json-read

The corpus is ``benchmarks/bad_input_volume.py``'s (1% malformed records of seven kinds, no big
documents). One timing is everything the JSON path costs a job: ``read_corpus`` (the column
inference included) and one full pass over each of its outputs, documents and rejected records,
into Spark's ``noop`` sink. The session (``local[2]``) is started and warmed up on a small file
first; the best of ``--repeat`` runs is the headline (this machine is shared), in wall-clock
seconds and in CPU seconds of the whole process tree (driver, JVM, Python workers), which other
load disturbs far less.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bad_input_volume import write_corpus  # noqa: E402
from benchmarks.process_tree import tree_cpu_seconds  # noqa: E402
from pipelines.config import InputConfig, SparkConfig  # noqa: E402
from pipelines.io.readers import read_corpus  # noqa: E402
from pipelines.spark_session import get_spark  # noqa: E402


def read_once(spark, path: str) -> dict:
    start, cpu = time.perf_counter(), tree_cpu_seconds(os.getpid())
    corpus = read_corpus(spark, InputConfig(path=path))
    corpus.documents.write.format("noop").mode("overwrite").save()
    corpus.rejected.write.format("noop").mode("overwrite").save()
    return {"seconds": round(time.perf_counter() - start, 2),
            "cpu_seconds": round(tree_cpu_seconds(os.getpid()) - cpu, 2), "load": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=110_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default="/tmp/json-read")
    parser.add_argument("--corpus", help="time this JSONL file instead of generating one")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    corpus = args.corpus or os.path.join(args.work, f"corpus-{args.records}.jsonl")
    if not os.path.exists(corpus):
        write_corpus(corpus, args.records, big=0, big_mb=0)
    warm = os.path.join(args.work, "warm.jsonl")
    if not os.path.exists(warm):
        write_corpus(warm, 2000, big=0, big_mb=0)
    spark = get_spark(SparkConfig(master="local[2]", driver_memory="4g", ui=False, log_level="ERROR"))
    read_once(spark, warm)
    runs = [read_once(spark, corpus) for _ in range(args.repeat)]
    print(json.dumps({"corpus_mb": round(os.path.getsize(corpus) / 2**20, 1), "records": args.records,
                      "best_seconds": min(r["seconds"] for r in runs),
                      "best_cpu_seconds": min(r["cpu_seconds"] for r in runs), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
