"""Wall-clock time per named stage, for ``stats.json`` and the console summary, and progress a person can follow.

Each stage logs one INFO line when it starts and one when it ends (seconds, and rows in and
out where the stage already knows them: nothing is counted just for the log), and names
itself to Spark (``setJobGroup``), so the Spark UI and the Dataproc job page say which stage
a running job belongs to.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

# Spark's local properties behind setJobGroup / setJobDescription.
_JOB_PROPERTIES = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")
# Set by the command line on Ctrl-C (``pipelines.cli``): a stage that fails after it was cancelled
# says so, instead of naming the cancelled Spark job's Java exception.
CANCELLED = threading.Event()
# The row counts an end line shows first, and their labels.
_ROWS = {"rows_in": "rows in", "rows_out": "rows out"}


@dataclass
class StageProgress:
    """What a stage notes about itself (``progress.note(rows_out=n, shards=k)``) for its end line:
    ``rows_in`` and ``rows_out`` first, left out while unknown, then the others in the order noted."""

    figures: dict = field(default_factory=dict)

    def note(self, **figures) -> None:
        self.figures.update(figures)

    def describe(self) -> str:
        parts = [f"{label} {self.figures[key]:,}" for key, label in _ROWS.items()
                 if self.figures.get(key) is not None]
        parts += [f"{k} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k} {v}"
                  for k, v in self.figures.items() if k not in _ROWS]
        return f" ({', '.join(parts)})" if parts else ""


class StageTimer:
    """``with timer.stage("name") as progress:`` times, logs and labels one stage of ``job``."""

    def __init__(self, job: str = "", spark=None) -> None:
        self.seconds: dict[str, float] = {}
        self.job = job
        self._sc = spark.sparkContext if spark is not None else None
        self.log = logging.getLogger(f"corpus_prep.{job}" if job else "corpus_prep")

    def _label(self, name: str) -> str:
        return f"{self.job} {name}" if self.job else name

    @contextmanager
    def stage(self, name: str):
        """Label the stage's Spark jobs, log its start, and at its end (failed or not) add its
        seconds, log its line and give Spark jobs back the enclosing label."""
        label = self._label(name)
        saved = {}
        if self._sc is not None:
            saved = {key: self._sc.getLocalProperty(key) for key in _JOB_PROPERTIES}
            self._sc.setJobGroup(f"corpus-prep.{self.job}.{name}" if self.job else f"corpus-prep.{name}",
                                 f"corpus-prep {label}")
        self.log.info("%s: started", label)
        start, progress = time.perf_counter(), StageProgress()
        try:
            yield progress
        except BaseException as err:
            elapsed = self._close(name, start, saved)
            cause = "interrupted" if CANCELLED.is_set() else type(err).__name__
            self.log.warning("%s: failed after %.1f s (%s)", label, elapsed, cause)
            raise
        elapsed = self._close(name, start, saved)
        self.log.info("%s: done in %.1f s%s", label, elapsed, progress.describe())

    def _close(self, name: str, start: float, saved: dict) -> float:
        elapsed = time.perf_counter() - start
        self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)
        for key, value in saved.items():
            self._sc.setLocalProperty(key, value)  # None removes it
        return elapsed
