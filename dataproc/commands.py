"""The exact command lines that create a Dataproc cluster and submit the pipeline to it, to Serverless, or to any Spark master.

Every function returns an argv list (nothing runs here): ``dataproc/__main__.py`` prints or
runs them, the tests assert on them, the Airflow DAG builds its operators from the same values.

Code and dependencies travel two ways, both built by ``dataproc/package.py`` from one pinned
list (``dataproc/requirements.txt``):

* **Dataproc clusters**: the dependencies are installed on every node when the cluster is
  created (``dataproc:pip.packages``); each job ships only the project's wheel (``--py-files``).
* **Serverless batches and self-managed clusters**: a packed virtualenv travels with the job
  (``--archives ENV.tar.gz#env``) and Python workers run ``./env/bin/python``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
WHEEL = "corpus_prep-0.1.0-py3-none-any.whl"
ENTRY = "prepare.py"
ENV_ARCHIVE = "corpus_prep_env.tar.gz"
ENV_ALIAS = "env"
ENV_PYTHON = f"./{ENV_ALIAS}/bin/python"
IMAGE_VERSION = "3.0-debian12"  # Dataproc on Compute Engine: Spark 4.0, Python 3.11
SERVERLESS_VERSION = "3.0"  # Serverless for Apache Spark: Spark 4.0, Python 3.12

_MACHINE = re.compile(r"^[a-z0-9]+-(standard|highmem|highcpu)-(\d+)$")
_GB_PER_VCPU = {"standard": 4, "highmem": 8, "highcpu": 1}


@dataclass(frozen=True)
class Target:
    """Where jobs run and where their artifacts live (``gs://BUCKET/PREFIX``, uploaded by ``package``)."""

    project: str
    region: str
    artifacts: str

    def uri(self, name: str) -> str:
        return f"{self.artifacts.rstrip('/')}/{name}"


@dataclass(frozen=True)
class ClusterShape:
    """A cluster sized for dedup: memory-optimised workers, local SSDs for shuffle and checkpoints."""

    name: str = "corpus-prep"
    master_machine_type: str = "n2-highmem-8"
    worker_machine_type: str = "n2-highmem-16"
    num_workers: int = 4
    local_ssds_per_worker: int = 2
    executor_cores: int = 4
    max_idle: str = "30m"  # an idle cluster deletes itself


def pinned_requirements() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines())
    return [line for line in lines if line]


def spark_properties(shape: ClusterShape) -> dict[str, str]:
    """Executor sizing and shuffle settings for a worker type.

    The MinHash and tokenizer kernels run in Python workers, outside the JVM heap, so a third
    of each executor's memory is overhead rather than heap. Shuffle partitions: three per core
    (AQE coalesces the small ones), so the signature and band-key shuffles never land in a few
    oversized tasks.
    """
    match = _MACHINE.match(shape.worker_machine_type)
    if not match:
        raise ValueError(f"cannot size executors for machine type {shape.worker_machine_type!r}")
    vcpus = int(match.group(2))
    executors_per_worker = max(1, vcpus // shape.executor_cores)
    usable_gb = 0.85 * vcpus * _GB_PER_VCPU[match.group(1)]  # the rest: OS, YARN NodeManager
    per_executor_gb = usable_gb / executors_per_worker
    heap_gb = int(per_executor_gb * 2 / 3)
    overhead_gb = int(per_executor_gb - heap_gb)
    total_cores = shape.num_workers * executors_per_worker * shape.executor_cores
    return {
        "spark.executor.cores": str(shape.executor_cores),
        "spark.executor.memory": f"{heap_gb}g",
        "spark.executor.memoryOverhead": f"{overhead_gb}g",
        "spark.sql.shuffle.partitions": str(3 * total_cores),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.advisoryPartitionSizeInBytes": "128m",
        "spark.sql.files.maxPartitionBytes": "256m",
    }


def _properties_flag(props: dict[str, str]) -> str:
    """``--properties`` with gcloud's alternate delimiter (``^#^``): pip specs contain commas."""
    return "--properties=^#^" + "#".join(f"{k}={v}" for k, v in props.items())


def prepare_args(input_path: str, output: str, stages: str | None = None, extra: tuple[str, ...] = (),
                 against: tuple[str, ...] = (), save_index: str | None = None,
                 update_index: str | None = None) -> list[str]:
    """Arguments of ``jobs/prepare.py`` (the job's own CLI is the source of their meaning).

    ``against``/``save_index``/``update_index``: incremental dedup against the indexes of earlier
    runs (``--against``, ``--save-index``, ``--update-index``), so that scheduled runs chain.
    """
    args = ["--input", input_path, "--output", output]
    if stages:
        args += ["--stages", stages]
    if against:
        args += ["--against", ",".join(against)]
    for flag, value in (("--save-index", save_index), ("--update-index", update_index)):
        if value:
            args += [flag, value]
    return args + list(extra)


def create_cluster(target: Target, shape: ClusterShape) -> list[str]:
    props = {"dataproc:pip.packages": ",".join(pinned_requirements())}
    props.update({f"spark:{k}": v for k, v in spark_properties(shape).items()})
    return ["gcloud", "dataproc", "clusters", "create", shape.name,
            f"--project={target.project}", f"--region={target.region}", f"--image-version={IMAGE_VERSION}",
            f"--master-machine-type={shape.master_machine_type}",
            f"--worker-machine-type={shape.worker_machine_type}", f"--num-workers={shape.num_workers}",
            f"--num-worker-local-ssds={shape.local_ssds_per_worker}", f"--max-idle={shape.max_idle}",
            _properties_flag(props)]


def submit_job(target: Target, cluster: str, args: list[str], labels: dict[str, str] | None = None) -> list[str]:
    """``jobs submit pyspark`` to a cluster made by :func:`create_cluster` (dependencies already installed)."""
    argv = ["gcloud", "dataproc", "jobs", "submit", "pyspark", target.uri(ENTRY),
            f"--project={target.project}", f"--region={target.region}", f"--cluster={cluster}",
            f"--py-files={target.uri(WHEEL)}"]
    if labels:
        argv.append("--labels=" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())))
    return argv + ["--", *args]


def batch_properties(shape: ClusterShape) -> dict[str, str]:
    """Serverless: the packed environment's interpreter, plus the same executor sizing as a cluster."""
    props = {"spark.pyspark.python": ENV_PYTHON, "spark.pyspark.driver.python": ENV_PYTHON}
    props.update({k: v for k, v in spark_properties(shape).items() if k.startswith("spark.executor.")
                  or k.startswith("spark.sql.")})
    return props


def submit_batch(target: Target, batch_id: str, args: list[str], shape: ClusterShape = ClusterShape()) -> list[str]:
    """``batches submit pyspark`` on Serverless runtime 3.0 with the packed environment."""
    return ["gcloud", "dataproc", "batches", "submit", "pyspark", target.uri(ENTRY),
            f"--project={target.project}", f"--region={target.region}", f"--batch={batch_id}",
            f"--version={SERVERLESS_VERSION}", f"--py-files={target.uri(WHEEL)}",
            f"--archives={target.uri(ENV_ARCHIVE)}#{ENV_ALIAS}", _properties_flag(batch_properties(shape)),
            "--", *args]


def upload(target: Target, dist: str) -> list[str]:
    """Copy the built artifacts to ``target.artifacts``: the wheel and entry script, and the packed
    environment when ``package --env-python`` built it (Dataproc clusters install their dependencies
    at creation and never need it; Serverless batches and spark-submit do)."""
    names = (ENTRY, WHEEL, ENV_ARCHIVE) if (Path(dist) / ENV_ARCHIVE).exists() else (ENTRY, WHEEL)
    files = [str(Path(dist) / name) for name in names]
    return ["gcloud", "storage", "cp", *files, target.artifacts.rstrip("/") + "/"]


def spark_submit(master: str, dist: str, driver_python: str, args: list[str],
                 spark_submit_bin: str = "spark-submit") -> list[str]:
    """Any Spark master (standalone, YARN, ``local-cluster``) in client mode: executors run the packed environment.

    The driver runs on the submitting machine, so it needs the same packages there:
    ``driver_python`` is the interpreter of an unpacked copy of the environment.
    """
    d = Path(dist)
    return [spark_submit_bin, "--master", master, "--archives", f"{d / ENV_ARCHIVE}#{ENV_ALIAS}",
            "--conf", f"spark.pyspark.python={ENV_PYTHON}", "--conf", f"spark.pyspark.driver.python={driver_python}",
            str(d / ENTRY), *args]
