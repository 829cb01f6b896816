"""Build what a cluster needs: the project wheel, the entry script, and a packed virtualenv.

``dist/corpus_prep-0.1.0-py3-none-any.whl``  the project (pure Python; kernels compile with numba on the executors)
``dist/prepare.py``                           the job's entry script (``jobs/prepare.py``)
``dist/corpus_prep_env.tar.gz``               a virtualenv with the wheel and ``requirements.txt`` (no pyspark:
                                              the cluster's Spark provides it), for ``--archives …#env``

A virtualenv refers to its base interpreter by absolute path, so the environment must be built
with the same Python, at the same path, as the machines that run it: build it on the runtime
image (``--python /opt/conda/default/bin/python`` on a Dataproc node or in its container).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from dataproc.commands import ENTRY, ENV_ARCHIVE, REQUIREMENTS, WHEEL

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(dist: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(dist), str(ROOT)], check=True)
    wheel = dist / WHEEL
    if not wheel.exists():
        raise FileNotFoundError(f"pip built no {WHEEL} in {dist} (version changed? update dataproc/commands.py)")
    return wheel


def copy_entry(dist: Path) -> Path:
    return Path(shutil.copy2(ROOT / "jobs" / ENTRY, dist / ENTRY))


def build_env(dist: Path, wheel: Path, python: str) -> Path:
    """Create the virtualenv in a scratch directory, install, and pack it as ``env/`` (symlinks kept)."""
    with tempfile.TemporaryDirectory(prefix="corpus-prep-env-") as scratch:
        env = Path(scratch) / "env"
        subprocess.run([python, "-m", "venv", "--without-pip", str(env)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--quiet",
               "--no-compile"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
        subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
        archive = dist / ENV_ARCHIVE
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            tar.add(env, arcname=".", filter=_without_caches)
    return archive


def _without_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in info.name.split("/") else info


def build(dist: Path, env_python: str | None) -> list[Path]:
    """Everything ``upload`` copies; the environment only when ``env_python`` is given."""
    dist.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(dist)
    built = [wheel, copy_entry(dist)]
    if env_python:
        built.append(build_env(dist, wheel, env_python))
    return built
