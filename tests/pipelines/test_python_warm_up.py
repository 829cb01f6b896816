"""The Python worker warm-up (``pipelines.spark_session.warm_python_worker``): the next Python task
of the session runs in a worker that has the kernels loaded.

It runs in a session of its own (a subprocess), whose worker nothing else has used: in the
shared test session every worker has long loaded them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
from pipelines.config import SparkConfig
from pipelines.spark_session import _new_spark, warm_python_worker

def probe(batches):
    import sys
    import pyarrow as pa
    for _ in batches:
        pass
    minhash = sys.modules.get("udfs.minhash")
    loaded = minhash is not None and len(minhash._signature_kernel.overloads) > 0
    yield pa.RecordBatch.from_arrays([pa.array([loaded])], names=["loaded"])

def kernels_loaded():
    return spark.range(1, numPartitions=1).mapInArrow(probe, "loaded boolean").first()["loaded"]

spark = _new_spark(SparkConfig(master="local[1]", ui=False, log_level="ERROR"))
before = kernels_loaded()  # starts the session's one worker, without the kernels
warm_python_worker(spark).wait()
print(json.dumps({"before": before, "after": kernels_loaded()}))
"""


def test_the_next_python_task_finds_the_kernels_loaded():
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"before": False, "after": True}
