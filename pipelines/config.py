"""Typed configuration for the jobs: the one place where every default lives.

The command-line parsers (``pipelines/cli.py``) take their defaults from these dataclasses, so
a default changed here is changed everywhere (CLI help, tests, benchmarks, submissions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class KeepPolicy(str, Enum):
    """Which member of a duplicate cluster survives (ties always go to the smallest id)."""

    SMALLEST_ID = "smallest-id"
    LONGEST = "longest"
    PRIORITY = "priority"  # highest value of --keep-priority COLUMN


@dataclass(frozen=True)
class InputConfig:
    """Where the corpus is and which columns to use."""

    path: str
    text_column: str = "content"
    fallback_text_column: str = "text"
    id_column: str | None = None
    input_format: str = "auto"  # auto | parquet | json | hf


@dataclass(frozen=True)
class MinHashConfig:
    """Shingling and signature settings (see ``udfs.minhash`` for the hash family)."""

    ngram: int = 5
    char_ngrams: bool = False
    num_perm: int = 256
    seed: int = 42


@dataclass(frozen=True)
class LshConfig:
    """Banding: ``bands``/``rows`` are derived from ``threshold`` unless both are given."""

    threshold: float = 0.7
    bands: int | None = None
    rows: int | None = None
    false_positive_weight: float = 0.3
    false_negative_weight: float = 0.7
    verify: bool = True


@dataclass(frozen=True)
class SparkConfig:
    master: str | None = None  # None: spark-submit's master, or local[*] when run with python
    shuffle_partitions: int | None = None
    app_name: str = "corpus-prep"
    driver_memory: str = "4g"  # only applied when the job starts local Spark itself
    ui: bool = True
    log_level: str = "WARN"


@dataclass(frozen=True)
class DedupConfig:
    input: InputConfig
    output: str
    overwrite: bool = False
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    lsh: LshConfig = field(default_factory=LshConfig)
    keep: KeepPolicy = KeepPolicy.SMALLEST_ID
    keep_priority_column: str | None = None
    max_cc_rounds: int = 100
    spark: SparkConfig = field(default_factory=SparkConfig)

    def __post_init__(self) -> None:
        if not 0.0 < self.lsh.threshold < 1.0:
            raise ValueError("--threshold must be in (0, 1)")
        if (self.lsh.bands is None) != (self.lsh.rows is None):
            raise ValueError("--bands and --rows must be given together")
        if self.lsh.bands is not None and self.lsh.bands * self.lsh.rows > self.minhash.num_perm:
            raise ValueError("--bands * --rows must not exceed --num-perm")
        if self.keep is KeepPolicy.PRIORITY and not self.keep_priority_column:
            raise ValueError("--keep priority needs --keep-priority COLUMN")
        if self.minhash.ngram < 1:
            raise ValueError("--ngram must be at least 1")
