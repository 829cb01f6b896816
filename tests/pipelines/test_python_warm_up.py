"""The Python worker warm-up (``pipelines.spark_session.warm_python_workers``): the next Python tasks
of the session run in workers that have the kernels loaded.

Each case runs in a session of its own (a subprocess), whose workers nothing else has used: in
the shared test session every worker has long loaded them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json
from pipelines.config import SparkConfig
from pipelines.spark_session import _new_spark, warm_python_workers

def probe(batches):
    import os, sys, time
    import pyarrow as pa
    for _ in batches:
        pass
    time.sleep(0.5)  # the tasks of one probe overlap, so each holds a worker of its own
    minhash = sys.modules.get("udfs.minhash")
    loaded = minhash is not None and len(minhash._signature_kernel.overloads) > 0
    yield pa.RecordBatch.from_arrays([pa.array([loaded]), pa.array([os.getpid()])], names=["loaded", "pid"])

def kernels_loaded(tasks):
    rows = spark.range(tasks, numPartitions=tasks).mapInArrow(probe, "loaded boolean, pid long").collect()
    return {"loaded": sorted(r["loaded"] for r in rows), "workers": len({r["pid"] for r in rows})}
"""


def run_probe(script: str) -> dict:
    run = subprocess.run([sys.executable, "-c", PROBE + script], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_next_python_task_finds_the_kernels_loaded():
    got = run_probe("""
spark = _new_spark(SparkConfig(master="local[1]", ui=False, log_level="ERROR"))
before = kernels_loaded(1)  # starts the session's one worker, without the kernels
warm_python_workers(spark).wait()
print(json.dumps({"before": before, "after": kernels_loaded(1)}))
""")
    assert got == {"before": {"loaded": [False], "workers": 1}, "after": {"loaded": [True], "workers": 1}}


def test_a_second_task_at_once_starts_a_cold_worker():
    """What the next test guards against: with one worker warmed, a two-task job's second task
    runs in a new worker that has not loaded the kernels."""
    got = run_probe("""
spark = _new_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR"))
warm_python_workers(spark).wait()
print(json.dumps(kernels_loaded(2)))
""")
    assert got == {"loaded": [False, True], "workers": 2}


def test_asking_for_more_workers_while_one_warms_warms_each_of_them():
    got = run_probe("""
spark = _new_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR"))
warm_python_workers(spark)  # in flight: its worker is busy
warm_python_workers(spark, 2).wait()  # one more warm-up, which starts a worker of its own
print(json.dumps(kernels_loaded(2)))
""")
    assert got == {"loaded": [True, True], "workers": 2}


# The pack job in a one-core session, whose one Python worker runs every task in turn: what its
# compiled kernels hold after the pack warm-up, and again after a whole pack run.
PACK_PROBE = """
import json, sys
from pipelines.config import InputConfig, PackConfig, SparkConfig, TokenizerConfig
from pipelines.pack import warm
from pipelines.pack.pipeline import run_pack
from pipelines.spark_session import _new_spark, warm_python_workers

def compiled(batches):
    import os, sys
    import pyarrow as pa
    from numba.core.dispatcher import Dispatcher
    for _ in batches:
        pass
    kernels = {f"{module}.{name}": sorted(str(s) for s in value.overloads)
               for module, m in list(sys.modules.items()) if module.startswith("udfs.")
               for name, value in vars(m).items() if isinstance(value, Dispatcher)}
    yield pa.RecordBatch.from_arrays([pa.array([json.dumps(kernels, sort_keys=True)]), pa.array([os.getpid()])],
                                     names=["kernels", "pid"])

def worker_kernels():
    (row,) = spark.range(1, numPartitions=1).mapInArrow(compiled, "kernels string, pid long").collect()
    return json.loads(row["kernels"]), row["pid"]

spark = _new_spark(SparkConfig(master="local[1]", ui=False, log_level="ERROR"))
warm_python_workers(spark, kernels=warm.load_kernels).wait()
warmed, pid = worker_kernels()
cfg = PackConfig(input=InputConfig(path=sys.argv[1]), output=sys.argv[2], seq_len=128, formats=["parquet", "tfrecord", "megatron"],
                 tokenizer=TokenizerConfig(train=True, vocab_size=600))
run_pack(cfg, spark=spark)
after, pid_after = worker_kernels()
print(json.dumps({"warmed": warmed, "after": after, "same_worker": pid == pid_after}))
"""


def test_the_pack_warm_up_leaves_the_pack_job_nothing_to_compile(tmp_path):
    """Every kernel a pack run calls in a worker, with the types it passes, is loaded by the
    warm-up: the run adds no compiled signature to any kernel of that worker."""
    run = subprocess.run([sys.executable, "-c", PACK_PROBE, str(ROOT / "samples" / "hf_blog_sample.parquet"),
                          str(tmp_path / "packed")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["same_worker"]
    assert {"udfs.tokenize._keys", "udfs.packing.best_fit_decreasing"} <= {k for k, v in got["warmed"].items() if v}
    assert got["after"] == got["warmed"]
