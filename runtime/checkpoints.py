"""Step-numbered training checkpoints on local disk or object storage, and safe resume state.

``OUTPUT/checkpoint-<step>/`` holds a ``save_pretrained`` model + tokenizer (so
``from_pretrained`` loads it), ``trainer_state.pt`` (step, optimizer, scheduler, loader,
world size, config) and ``rng/rank-<r>.pt``. A checkpoint is *complete* once its ``COMPLETE``
marker exists, which is written last: locally the whole directory is staged as
``checkpoint-<step>.tmp`` and renamed into place; on a bucket (where a directory rename is a
copy) the files are uploaded and the marker after them. Resume takes the newest complete
checkpoint, so a save killed half-way is ignored.

Everything in the state files is tensors, numbers, strings and containers, and they are
read with ``torch.load(weights_only=True)``: a checkpoint fetched from a bucket cannot run
code through pickle, and one that tries is refused (``CheckpointError``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import torch

from pipelines.io import uri

PREFIX = "checkpoint-"
COMPLETE = "COMPLETE"
STATE_FILE = "trainer_state.pt"
_STEP = re.compile(rf"^{PREFIX}(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or not safely loadable."""


def step_dir(output: str, step: int) -> str:
    return uri.join(output, f"{PREFIX}{step}")


def complete_checkpoints(output: str) -> list[tuple[int, str]]:
    """``(step, path)`` of the complete checkpoints under ``output``, oldest first."""
    found = []
    for name in uri.listdir(output):
        match = _STEP.match(name)
        if match and uri.exists(uri.join(output, name, COMPLETE)):
            found.append((int(match.group(1)), uri.join(output, name)))
    return sorted(found)


def latest_checkpoint(output: str) -> str | None:
    """The newest complete ``checkpoint-<step>`` under ``output``, or None."""
    found = complete_checkpoints(output)
    return found[-1][1] if found else None


def resolve_model_dir(path: str) -> str:
    """A model directory as given, or a training output's newest complete checkpoint."""
    if uri.exists(uri.join(path, "config.json")):
        return path
    return latest_checkpoint(path) or path


def local_copy(path: str) -> str:
    """A local path for ``path``: itself when local, else a downloaded copy (file or directory)."""
    if not uri.is_remote(path):
        return str(path).removeprefix("file://")
    if not uri.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist")
    local = tempfile.mkdtemp(prefix="runtime-fetch-")
    target = local if uri.is_dir(path) else os.path.join(local, path.rstrip("/").rsplit("/", 1)[-1])
    return uri.download(path, target)


def safe_load(path: str):
    """``torch.load(weights_only=True)`` of a local or remote file; pickled code is refused."""
    data = uri.read_bytes(path)
    import io
    import pickle

    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"it would call {culprit.group(1)}" if culprit else "it is not plain tensors and numbers"
        raise CheckpointError(f"{path}: refused to unpickle, {what} (torch.load weights_only=True)") from None


def staging_dir(output: str, step: int) -> str:
    """Where a checkpoint is assembled: beside its final place locally, a temporary directory otherwise."""
    if uri.is_remote(output):
        return tempfile.mkdtemp(prefix=f"{PREFIX}{step}-")
    staging = os.path.join(output.removeprefix("file://"), f"{PREFIX}{step}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    return staging


def publish(staging: str, output: str, step: int) -> str:
    """Mark the staged checkpoint complete and move it to ``checkpoint-<step>`` (replacing one there).

    On a bucket the caller has already cleared ``checkpoint-<step>`` (ranks' RNG files are in it).
    """
    final = step_dir(output, step)
    uri.write_bytes(uri.join(staging, COMPLETE), b"")
    if uri.is_remote(output):
        uri.upload_dir(staging, final, last=COMPLETE)
        shutil.rmtree(staging, ignore_errors=True)
        return final
    local = final.removeprefix("file://")
    if uri.exists(local):
        old = local + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(local, old)
        os.rename(staging, local)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, local)
    return final


def prune(output: str, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints (0 keeps all), and leftovers of
    interrupted saves older than the newest."""
    found = complete_checkpoints(output)
    if not found:
        return
    doomed = [path for _, path in found[:-keep_last]] if keep_last > 0 else []
    complete = {path for _, path in found}
    for name in uri.listdir(output):
        match = re.match(rf"^{PREFIX}(\d+)(\.tmp|\.old)?$", name)
        path = uri.join(output, name)
        if match and path not in complete and int(match.group(1)) < found[-1][0]:
            doomed.append(path)
    for path in doomed:
        if uri.is_remote(path):
            uri.delete_dir(path)
        else:
            shutil.rmtree(path.removeprefix("file://"), ignore_errors=True)
