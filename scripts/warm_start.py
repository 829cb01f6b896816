"""Start-up caches for the jobs (``scripts/setup.sh`` runs this once per environment).

1. **Kernels.** A Numba kernel is compiled on its first call for the argument types it meets,
   and the machine code is cached beside its source (``udfs/__pycache__``), keyed by the source
   file, so that every later process loads it in a fraction of a second. Without this step the
   first job after a checkout compiles each kernel in every Python worker at once: about 20 s
   of CPU per worker for the signature kernel alone. ``udfs.warm.load_kernels`` (the dedup
   job's kernels) and ``pipelines.pack.warm.load_kernels`` (the pack job's) make those first
   calls with the types the jobs pass, so what is cached here is what the jobs load.
2. **JVM classes.** The bundled sample is deduplicated once in a JVM that writes the classes it
   loaded to a class-data-sharing archive (``pipelines.spark_session.CLASS_ARCHIVE``, inside the
   environment whose jars it describes). A job that starts Spark itself maps them from there
   instead of loading and verifying them from the jars.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipelines.config import DEDUP_SPARK, DedupConfig, InputConfig  # noqa: E402
from pipelines.spark_session import CLASS_ARCHIVE, get_spark  # noqa: E402
from pipelines.pack import warm as pack_warm  # noqa: E402
from udfs.warm import load_kernels  # noqa: E402


def archive_classes() -> None:
    """Deduplicate the bundled sample in a JVM that writes ``CLASS_ARCHIVE`` as it exits, and wait for that."""
    from dataclasses import replace

    from pipelines.dedup.pipeline import run_dedup

    if os.path.exists(CLASS_ARCHIVE):
        os.remove(CLASS_ARCHIVE)  # a JVM that maps an archive cannot also write one
    settings = replace(DEDUP_SPARK, master="local[2]", ui=False, log_level="ERROR",
                       driver_java_options=f"{DEDUP_SPARK.driver_java_options} -XX:ArchiveClassesAtExit={CLASS_ARCHIVE} "
                                           "-Xlog:cds=off")  # no line per class it leaves out (signed jars)
    spark = get_spark(settings)
    with tempfile.TemporaryDirectory() as work:
        run_dedup(DedupConfig(input=InputConfig(os.path.join(ROOT, "samples", "hf_public_repos_sample.parquet")),
                              output=os.path.join(work, "out"), spark=settings), spark=spark)
    spark.stop()
    jvm = spark.sparkContext._gateway.proc  # the JVM exits when its standard input closes
    jvm.stdin.close()
    jvm.wait(timeout=300)


def main() -> None:
    start = time.perf_counter()
    load_kernels()
    pack_warm.load_kernels()
    print(f"kernels compiled and cached in {time.perf_counter() - start:.1f} s")
    archive_classes()
    print(f"JVM class archive {CLASS_ARCHIVE}: " + ("written" if os.path.exists(CLASS_ARCHIVE) else "NOT written"))


if __name__ == "__main__":
    main()
