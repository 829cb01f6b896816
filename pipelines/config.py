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


class VerifyMode(str, Enum):
    """How a candidate pair becomes an edge of the duplicate graph (``pipelines/dedup/verify.py``)."""

    EXACT = "exact"  # exact Jaccard of the shingle sets wherever the signature estimate is uncertain
    ESTIMATE = "estimate"  # the signature estimate alone (standard error 0.029 at J = 0.7, 256 perms)
    OFF = "off"  # every LSH candidate (chance collisions chain unrelated documents)


@dataclass(frozen=True)
class LshConfig:
    """Banding, candidate pairs and their verification.

    ``bands``/``rows`` are derived from ``threshold`` unless both are given.
    """

    threshold: float = 0.7
    bands: int | None = None
    rows: int | None = None
    # Candidates are verified, so a false positive costs one signature comparison (or one
    # exact Jaccard near the threshold) while a false negative leaves a duplicate in for good:
    # weight misses 99:1. At t = 0.7 and 256 permutations this gives b = 39, r = 6 (P = 0.992
    # at s = 0.7, 0.9995 at 0.75; 36 x 7 at 19:1 gave 0.955 and 0.994). BENCHMARKS.md, "Real
    # corpus", compares the two on real data.
    false_positive_weight: float = 0.01
    false_negative_weight: float = 0.99
    verify: VerifyMode = VerifyMode.EXACT
    # Under --verify exact, an estimate more than this many standard errors
    # (sqrt(t(1-t)/num_perm)) from the threshold decides a pair alone; the pairs in between get
    # their exact Jaccard. At 4 a pair is misjudged with chance below 1 in 30,000.
    uncertain_within_se: float = 4.0
    # Buckets of up to this many members yield all their pairs; larger ones pair each member
    # with this many random others per band (``udfs.lsh.bucket_pairs``).
    all_pairs_bucket: int = 32
    bucket_neighbours: int = 8


@dataclass(frozen=True)
class SparkConfig:
    master: str | None = None  # None: spark-submit's master, or local[*] when run with python
    shuffle_partitions: int | None = None
    app_name: str = "corpus-prep"
    driver_memory: str = "4g"  # only applied when the job starts local Spark itself
    ui: bool = True
    log_level: str = "WARN"
    # Parquet is written with zstd. Level 1 writes this project's text outputs and checkpoints
    # about 1.6x faster than level 3 for ~15% larger files (BENCHMARKS.md, "Dedup speed").
    zstd_level: int = 1


@dataclass(frozen=True)
class LogConfig:
    """The driver's progress log (``pipelines.logs``): level of corpus-prep's own loggers."""

    level: str = "INFO"
    quiet: bool = False  # warnings and errors only


@dataclass(frozen=True)
class DedupConfig:
    input: InputConfig
    output: str
    overwrite: bool = False
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    lsh: LshConfig = field(default_factory=LshConfig)
    keep: KeepPolicy = KeepPolicy.SMALLEST_ID
    keep_priority_column: str | None = None
    # Keys (nodes, clusters, exact-copy groups) with at least this many rows are joined by
    # broadcast instead of a shuffle, so no task receives a whole hub (pipelines/dedup/skew.py).
    hub_degree: int = 10_000
    # Clusters of at least this many documents are listed in stats.json (giant_clusters).
    giant_cluster_size: int = 10_000
    max_cc_rounds: int = 100
    # Up to this many removed ids (8 bytes each) are broadcast to filter rows in place (the
    # texts at the end, the signatures before LSH); beyond it those anti-joins shuffle once.
    broadcast_removed_ids: int = 5_000_000
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
        if not isinstance(self.lsh.verify, VerifyMode):
            raise ValueError(f"lsh.verify must be one of {[m.value for m in VerifyMode]}, not {self.lsh.verify!r}")
        if self.lsh.all_pairs_bucket < 2 or self.lsh.bucket_neighbours < 1:
            raise ValueError("--all-pairs-bucket must be at least 2 and --bucket-neighbours at least 1")
        if self.lsh.uncertain_within_se < 0:
            raise ValueError("--uncertain-within-se must not be negative")
        if self.minhash.ngram < 1:
            raise ValueError("--ngram must be at least 1")
        if self.hub_degree < 2 or self.giant_cluster_size < 2:
            raise ValueError("--hub-degree and --giant-cluster-size must be at least 2")


# ---------------------------------------------------------------------------------------
# Tokenize and pack (jobs/pack.py)


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer, and how document boundaries are marked.

    Either ``path`` (a local HF ``tokenizer.json``) or ``train`` (byte-level BPE or WordPiece
    trained on the corpus itself, on at most ``train_sample_bytes`` of text chosen by a hash of
    the text). Every document becomes ``[BOS] + encode(text, add_special_tokens=False) + [EOS]``;
    BOS only when ``bos_token`` is set. A ``pad_token`` missing from a given tokenizer falls back
    to EOS.

    Encoders (masked-LM pretraining): ``mask_token`` names the ``[MASK]`` token, and BOS/EOS are
    the ``[CLS]``/``[SEP]`` that frame each document (``--bos-token '[CLS]' --eos-token '[SEP]'``),
    so every document is ``[CLS] text [SEP]``; the manifest then records ``mask_id``, ``cls_id``
    and ``sep_id``. An encoder needs its own pad token (no EOS fallback).
    """

    path: str | None = None
    train: bool = False
    model: str = "byte-bpe"  # byte-bpe | wordpiece: what --train-tokenizer trains
    vocab_size: int = 32000
    min_frequency: int = 2
    train_sample_bytes: int = 512 * 2**20
    eos_token: str = "<|endoftext|>"
    bos_token: str | None = None
    pad_token: str = "<|pad|>"
    mask_token: str | None = None  # set for encoder tokenizers: the [MASK] of masked-LM pretraining
    unk_token: str = "[UNK]"  # WordPiece's unknown token (byte-level BPE needs none)


@dataclass(frozen=True)
class PackConfig:
    input: InputConfig
    output: str
    seq_len: int = 2048
    overwrite: bool = False
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    packing: str = "best-fit"  # best-fit | greedy
    formats: tuple[str, ...] = ("parquet", "tfrecord")  # and/or megatron (documents unpacked, .bin/.idx)
    feature_names: str = "default"  # default | seqio | maxtext: the column names trainers read
    source_column: str | None = None  # per-source token counts by this column (default: the input file)
    target_shard_bytes: int = 64 * 2**20  # uncompressed row payload per shard
    num_shards: int | None = None  # fixed number of shards instead of the size target
    max_doc_tokens: int | None = None  # cap per document (tokens beyond it are dropped, counted)
    shuffle_rows: bool = True  # permute rows within a shard (seeded: output stays deterministic)
    seed: int = 0
    parquet_compression: str = "zstd"
    parquet_row_group_rows: int = 1024
    spark: SparkConfig = field(default_factory=SparkConfig)

    def __post_init__(self) -> None:
        if not 2 <= self.seq_len <= 65535:
            raise ValueError("--seq-len must be in [2, 65535] (positions are stored as uint16)")
        if (self.tokenizer.path is None) == (not self.tokenizer.train):
            raise ValueError("give exactly one of --tokenizer PATH and --train-tokenizer")
        if self.tokenizer.train and self.tokenizer.vocab_size < 300:
            raise ValueError("--vocab-size must be at least 300 (256 bytes + special tokens + merges)")
        if self.tokenizer.model not in ("byte-bpe", "wordpiece"):
            raise ValueError("--tokenizer-model must be byte-bpe or wordpiece")
        if self.tokenizer.path and self.tokenizer.model != TokenizerConfig.model:
            raise ValueError("--tokenizer-model chooses what --train-tokenizer trains; a given --tokenizer is used as is")
        if self.tokenizer.mask_token is not None and self.tokenizer.bos_token is None:
            raise ValueError("--mask-token needs --bos-token: encoder documents are framed [CLS] text [SEP] "
                             "(e.g. --bos-token '[CLS]' --eos-token '[SEP]' --pad-token '[PAD]')")
        if self.packing not in ("best-fit", "greedy"):
            raise ValueError("--packing must be best-fit or greedy")
        if not self.formats or set(self.formats) - {"parquet", "tfrecord", "megatron"}:
            raise ValueError("--formats must be a non-empty subset of parquet,tfrecord,megatron")
        if self.feature_names not in ("default", "seqio", "maxtext"):
            raise ValueError("--feature-names must be default, seqio or maxtext")
        if self.num_shards is not None and self.num_shards < 1:
            raise ValueError("--num-shards must be at least 1")
        if self.target_shard_bytes < 1:
            raise ValueError("--target-shard-bytes must be positive")
        specials = 2 if self.tokenizer.bos_token else 1
        if self.max_doc_tokens is not None and self.max_doc_tokens <= specials:
            raise ValueError(f"--max-doc-tokens must exceed the {specials} special token(s) per document")


# ---------------------------------------------------------------------------------------
# End to end (jobs/prepare.py)

PREPARE_STAGES = ("dedup", "pack", "report")


def stage_dir(output: str, stage: str) -> str:
    """Where a stage of an end-to-end run writes: ``OUTPUT/dedup``, ``OUTPUT/pack``."""
    return f"{output.rstrip('/')}/{stage}"


@dataclass(frozen=True)
class PrepareConfig:
    """``OUTPUT/dedup`` (``dedup``) → ``OUTPUT/pack`` (``pack``, reading the dedup output) → ``OUTPUT/report.html``.

    A stage whose verified output already exists for the same settings and input is skipped
    unless ``force``; ``stages`` runs a subset (in pipeline order).
    """

    output: str
    dedup: DedupConfig
    pack: PackConfig
    stages: tuple[str, ...] = PREPARE_STAGES
    force: bool = False
    spark: SparkConfig = field(default_factory=SparkConfig)

    def __post_init__(self) -> None:
        unknown = set(self.stages) - set(PREPARE_STAGES)
        if not self.stages or unknown:
            raise ValueError(f"--stages must be a non-empty subset of {','.join(PREPARE_STAGES)}; "
                             f"unknown: {','.join(sorted(unknown))}")


@dataclass(frozen=True)
class ReportConfig:
    """``OUTPUT/report.html`` alone, from the verified stage outputs an earlier run left in ``OUTPUT``."""

    output: str
    spark: SparkConfig = field(default_factory=SparkConfig)
