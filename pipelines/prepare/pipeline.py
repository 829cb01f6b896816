"""The end-to-end run: dedup → tokenize and pack → report, each stage skipped when its verified output exists.

Layout of ``OUTPUT``: ``dedup/`` (the dedup job's output, report included), ``pack/`` (shards,
``tokenizer.json``, ``manifest.json``), ``_stages/*.json`` (what produced each stage, see
``stages``), ``report.html`` and ``report/*.png``. Stage outputs are published atomically by
the stage jobs themselves, so an interrupted run leaves either the old output or none.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from pipelines.config import PrepareConfig, ReportConfig, stage_dir
from pipelines.dedup.checkpoints import run_key
from pipelines.dedup.pipeline import indexed_runs, run_dedup
from pipelines.errors import OneLineError, UserError
from pipelines.io.hadoop import HadoopFs
from pipelines.io.paths import check_paths
from pipelines.pack.pipeline import run_pack
from pipelines.pack.tokenizer import TokenizerInfo, load_tokenizer_file
from pipelines.prepare import stages as st
from pipelines.report.prepare import write_prepare_report
from pipelines.spark_session import get_spark
from pipelines.timing import StageTimer

log = logging.getLogger("corpus_prep.prepare")


class PrepareError(UserError, RuntimeError):
    """The requested stages cannot run as asked (e.g. pack without a usable dedup output)."""


class StageFailed(OneLineError, RuntimeError):
    """A stage's Spark job failed (exit 1); the message carries the root cause, not the worker traceback."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        lines = [line for line in str(cause).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else type(cause).__name__
        super().__init__(f"stage {stage} failed: {reason}")
        self.stage = stage


@dataclass
class StageOutcome:
    stage: str
    status: str  # ran | skipped
    seconds: float  # of the run that produced the output
    reason: str


@dataclass
class PrepareResult:
    output: str
    outcomes: list[StageOutcome] = field(default_factory=list)
    stats: dict | None = None  # dedup stats.json
    manifest: dict | None = None  # pack manifest.json
    report: str | None = None


def run_prepare(cfg: PrepareConfig, spark: SparkSession | None = None) -> PrepareResult:
    # Before Spark starts (and before an hour of dedup): the paths, the tokenizer file.
    check_paths(cfg.dedup.input.path, cfg.output, overwrite=True, list_input="dedup" in cfg.stages)
    given = load_tokenizer_file(cfg.pack.tokenizer) if "pack" in cfg.stages and cfg.pack.tokenizer.path else None
    spark = spark or get_spark(cfg.spark)
    fs = HadoopFs(spark)
    result = PrepareResult(cfg.output)
    timer = StageTimer("prepare", spark)
    if "dedup" in cfg.stages:
        with timer.stage("dedup"):
            _stage(result, fs, cfg, "dedup", lambda: _dedup(spark, fs, cfg))
    elif "pack" in cfg.stages or "report" in cfg.stages:
        result.stats, _ = _upstream(spark, fs, cfg.output, cfg.dedup.output, required="pack" in cfg.stages)
    if "pack" in cfg.stages:
        with timer.stage("pack"):
            _stage(result, fs, cfg, "pack", lambda: _pack(spark, fs, cfg, given))
    elif "report" in cfg.stages:
        result.manifest = _existing_pack(fs, cfg.pack.output)
    if "report" in cfg.stages:
        with timer.stage("report"):
            result.report = write_prepare_report(fs, cfg.output, result)
    return result


def _stage(result: PrepareResult, fs: HadoopFs, cfg: PrepareConfig, name: str, run) -> None:
    try:
        outcome, payload = run()
    except Exception as exc:
        if type(exc).__module__.startswith(("py4j", "pyspark")):
            raise StageFailed(name, exc) from exc
        raise
    result.outcomes.append(outcome)
    if name == "dedup":
        result.stats = payload
    else:
        result.manifest = payload
    log.info("%s: %s (%s)", name, outcome.status, outcome.reason)


def _reuse(fs: HadoopFs, cfg: PrepareConfig, stage: str, fingerprint: str,
           verify) -> tuple[StageOutcome | None, dict | None, str]:
    """``(outcome, payload, why it reruns)``: an outcome only when the existing output can be reused."""
    if cfg.force:
        return None, None, "--force"
    record = st.read_record(fs, cfg.output, stage)
    if record is None:
        return None, None, "no previous output"
    if record.get("fingerprint") != fingerprint:
        return None, None, "settings or input changed"
    try:
        payload, stamp = verify()
    except st.StageInvalid as exc:
        return None, None, f"previous output unusable: {exc}"
    if stamp != record.get("stamp"):
        return None, None, "output differs from the one recorded"
    return StageOutcome(stage, "skipped", record["seconds"], "verified output for the same settings and input"), payload, ""


def _finish(fs: HadoopFs, cfg: PrepareConfig, stage: str, fingerprint: str, stamp: str, seconds: float,
            stage_seconds: dict, reason: str) -> StageOutcome:
    st.write_record(fs, cfg.output, stage, {
        "fingerprint": fingerprint, "stamp": stamp, "seconds": round(seconds, 3),
        "stage_seconds": stage_seconds, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return StageOutcome(stage, "ran", round(seconds, 3), reason)


def _dedup(spark: SparkSession, fs: HadoopFs, cfg: PrepareConfig):
    root = cfg.dedup.output
    fingerprint = run_key(fs, cfg.dedup, [run.id for run in indexed_runs(cfg.dedup, fs)])
    outcome, stats, reason = _reuse(fs, cfg, "dedup", fingerprint, lambda: st.verify_dedup(spark, fs, root))
    if outcome:
        return outcome, stats
    log.info("dedup: running (%s)", reason)
    start = time.perf_counter()
    stats = run_dedup(cfg.dedup, spark).stats
    seconds = time.perf_counter() - start
    _, stamp = st.verify_dedup(spark, fs, root)
    return _finish(fs, cfg, "dedup", fingerprint, stamp, seconds, stats["stage_seconds"], reason), stats


def _upstream(spark: SparkSession, fs: HadoopFs, output: str, dedup_root: str, required: bool
              ) -> tuple[dict | None, str | None]:
    """The dedup output the pack stage reads, verified and matching its record."""
    record = st.read_record(fs, output, "dedup")
    try:
        stats, stamp = st.verify_dedup(spark, fs, dedup_root)
        if record is None or record.get("stamp") != stamp:
            raise st.StageInvalid(f"{dedup_root} was not produced by this pipeline's dedup stage")
    except st.StageInvalid as exc:
        if required:
            raise PrepareError(f"the pack stage reads the dedup output, which is not usable: {exc}; "
                               "run the dedup stage first (--stages dedup,pack)") from exc
        return None, None
    return stats, stamp


def _pack(spark: SparkSession, fs: HadoopFs, cfg: PrepareConfig, given: TokenizerInfo | None):
    root = cfg.pack.output
    _, upstream = _upstream(spark, fs, cfg.output, cfg.dedup.output, required=True)
    fingerprint = st.pack_fingerprint(fs, cfg.pack, upstream)
    outcome, manifest, reason = _reuse(fs, cfg, "pack", fingerprint, lambda: st.verify_pack(fs, root))
    if outcome:
        return outcome, manifest
    log.info("pack: running (%s)", reason)
    start = time.perf_counter()
    result = run_pack(cfg.pack, spark, tokenizer=given)
    seconds = time.perf_counter() - start
    _, stamp = st.verify_pack(fs, root)
    stage_seconds = {k: round(v, 3) for k, v in result.stage_seconds.items()}
    return _finish(fs, cfg, "pack", fingerprint, stamp, seconds, stage_seconds, reason), result.manifest


def _existing_pack(fs: HadoopFs, pack_root: str) -> dict | None:
    try:
        return st.verify_pack(fs, pack_root)[0]
    except st.StageInvalid:
        return None


def run_report(cfg: ReportConfig, spark: SparkSession | None = None) -> PrepareResult:
    """The run report of ``cfg.output`` as ``prepare --stages report`` writes it, from the outputs that verify."""
    spark = spark or get_spark(cfg.spark)
    fs = HadoopFs(spark)
    result = PrepareResult(cfg.output)
    with StageTimer("prepare", spark).stage("report"):
        result.stats, _ = _upstream(spark, fs, cfg.output, stage_dir(cfg.output, "dedup"), required=False)
        result.manifest = _existing_pack(fs, stage_dir(cfg.output, "pack"))
        result.report = write_prepare_report(fs, cfg.output, result)
    return result
