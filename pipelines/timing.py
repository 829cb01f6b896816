"""Wall-clock time per named stage, for ``stats.json`` and the console summary, and progress a person can follow.

Each stage logs one INFO line when it starts and one when it ends (seconds, and rows in and
out where the stage already knows them: nothing is counted just for the log), and names
itself to Spark (``setJobGroup``), so the Spark UI and the Dataproc job page say which stage
a running job belongs to.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

# Spark's local properties behind setJobGroup / setJobDescription.
_JOB_PROPERTIES = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")


@dataclass
class StageProgress:
    """What a stage reports about itself at its end; unset figures are left out of the line."""

    rows_in: int | None = None
    rows_out: int | None = None
    details: dict = field(default_factory=dict)

    def note(self, **figures) -> None:
        self.details.update(figures)

    def describe(self) -> str:
        parts = [f"{label} {value:,}" for label, value in (("rows in", self.rows_in), ("rows out", self.rows_out))
                 if value is not None]
        parts += [f"{k} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k} {v}"
                  for k, v in self.details.items()]
        return f" ({', '.join(parts)})" if parts else ""


class StageTimer:
    """``with timer.stage("name") as progress:`` times, logs and labels one stage of ``job``."""

    def __init__(self, job: str = "", spark=None) -> None:
        self.seconds: dict[str, float] = {}
        self.job = job
        self._sc = spark.sparkContext if spark is not None else None
        self.log = logging.getLogger(f"corpus_prep.{job}" if job else "corpus_prep")
        self._open: dict[str, tuple[float, dict, StageProgress]] = {}

    def _label(self, name: str) -> str:
        return f"{self.job} {name}" if self.job else name

    @contextmanager
    def stage(self, name: str):
        progress = self.begin(name)
        try:
            yield progress
        except BaseException as err:
            self.end(name, failed=err)
            raise
        self.end(name)

    def begin(self, name: str) -> StageProgress:
        """Start ``name`` (for code that cannot wrap a stage in ``with``); :meth:`end` closes it."""
        label = self._label(name)
        saved = {}
        if self._sc is not None:
            saved = {key: self._sc.getLocalProperty(key) for key in _JOB_PROPERTIES}
            self._sc.setJobGroup(f"corpus-prep.{self.job}.{name}" if self.job else f"corpus-prep.{name}",
                                 f"corpus-prep {label}")
        self.log.info("%s: started", label)
        self._open[name] = (time.perf_counter(), saved, StageProgress())
        return self._open[name][2]

    def fail_open(self, err: BaseException) -> None:
        """Close every stage still open when a job fails, so its label does not stick to later Spark jobs."""
        for name in reversed(list(self._open)):
            self.end(name, failed=err)

    def end(self, name: str, failed: BaseException | None = None, **figures) -> float:
        """Close ``name``: log its line, add its seconds, give Spark jobs back the enclosing label."""
        start, saved, progress = self._open.pop(name)
        elapsed = time.perf_counter() - start
        self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)
        for key, value in saved.items():
            self._sc.setLocalProperty(key, value)  # None removes it
        label = self._label(name)
        if failed is not None:
            self.log.warning("%s: failed after %.1f s (%s)", label, elapsed, type(failed).__name__)
        else:
            progress.note(**{k: v for k, v in figures.items() if k not in ("rows_in", "rows_out")})
            progress.rows_in = figures.get("rows_in", progress.rows_in)
            progress.rows_out = figures.get("rows_out", progress.rows_out)
            self.log.info("%s: done in %.1f s%s", label, elapsed, progress.describe())
        return elapsed
