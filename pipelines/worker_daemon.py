"""PySpark's Python worker daemon, importing PySpark from its installed package's byte code.

Spark puts ``$SPARK_HOME/python/lib/pyspark.zip`` first on its Python workers' path, and Python
keeps no byte code for modules it imports from a zip: the daemon, and each worker it forks,
compile PySpark's modules from source. ``import pyspark.daemon, pyspark.worker`` takes
0.65–1.04 s from the zip against 0.26 s from the installed package, and on a small input it is on
the critical path of the first Python task (BENCHMARKS.md, "PySpark's byte code on the workers").

When PySpark is pip-installed, Spark's home *is* that package, so its zip holds the same sources
as the package beside it on the path. This daemon then drops the zip from ``sys.path`` (workers
are forked from it and inherit the path) and runs PySpark's own daemon. Anywhere else (a Spark
distribution, a cluster image) the path is left as Spark set it.

Spark runs it as ``python -m pipelines.worker_daemon pyspark.worker`` when
``spark.python.daemon.module`` names it; :mod:`pipelines.spark_session` does so when the job
starts a local Spark itself. It imports nothing but the standard library before the path is set.
"""

from __future__ import annotations

import os
import sys

SPARK_ZIP = os.path.join("python", "lib", "pyspark.zip")


def without_installed_pyspark_zip(path: list[str]) -> list[str]:
    """``path`` less each ``HOME/python/lib/pyspark.zip`` whose ``HOME`` is a PySpark package that
    ``path`` itself imports (``HOME/__init__.py`` in a directory that is on ``path``)."""
    directories = {os.path.realpath(entry) for entry in path if entry and os.path.isdir(entry)}

    def installed_home(entry: str) -> bool:
        if not entry.endswith(os.sep + SPARK_ZIP):
            return False
        home = entry[: -len(os.sep + SPARK_ZIP)]
        return (os.path.basename(home) == "pyspark" and os.path.isfile(os.path.join(home, "__init__.py"))
                and os.path.realpath(os.path.dirname(home)) in directories)

    return [entry for entry in path if not installed_home(entry)]


if __name__ == "__main__":
    sys.path[:] = without_installed_pyspark_zip(sys.path)
    from pyspark.daemon import manager

    manager()
