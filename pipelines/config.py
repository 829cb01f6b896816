"""Typed configuration for the jobs: the one place where every default lives.

The command-line parsers (``pipelines/*/cli.py``) take their defaults from these dataclasses, so
a default changed here is changed everywhere (CLI help, tests, benchmarks, submissions).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum

from pipelines.errors import UsageError, alternatives
from udfs.signature_format import MAX_NGRAM


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


# Signatures hold 4 bytes per permutation per document: 8192 already means 32 KB per document,
# and the (bands, rows) search covers about num_perm * ln(num_perm) pairs.
MAX_NUM_PERM = 8192


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


# What the JVM accepts for -Xmx: digits and an optional unit (no "gb", no decimals).
JVM_MEMORY = re.compile(r"^(\d+)([kKmMgGtT]?)$")
# Spark refuses a driver heap below 450 MiB ("System memory ... must be at least 471859200").
MIN_DRIVER_MEMORY_MB = 512
# The master URLs Spark knows; anything else fails only once the JVM is up.
SPARK_MASTER = re.compile(r"^(local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|yarn"
                          r"|(spark|k8s|mesos)://\S+)$")


def jvm_memory_mb(text: str) -> float | None:
    """Megabytes in a JVM memory string (``4g``, ``512m``, ``1073741824``), or None if it is not one."""
    match = JVM_MEMORY.match(text)
    if not match:
        return None
    exponent = {"": -2, "k": -1, "m": 0, "g": 1, "t": 2}[match.group(2).lower()]
    return int(match.group(1)) * 1024.0 ** exponent


@dataclass(frozen=True)
class SparkConfig:
    master: str | None = None  # None: spark-submit's master, or local[*] when run with python
    shuffle_partitions: int | None = None
    app_name: str = "corpus-prep"
    driver_memory: str = "4g"  # only applied when the job starts local Spark itself
    # ... as are these driver JVM options. The optimising JIT compiler (C2) costs a short job
    # more than it saves: half the JVM's CPU time on the 100-document sample, a quarter on the
    # 1 GB real corpus (BENCHMARKS.md, "Dedup speed"); the JVM's hot work here is I/O and
    # hashing that the quick compiler (C1) handles well.
    driver_java_options: str = "-XX:TieredStopAtLevel=1"
    ui: bool = True
    progress_bar: bool = False  # Spark's console progress bar, when the job starts Spark itself
    log_level: str = "WARN"
    # Parquet is written with zstd. Level 1 writes this project's text outputs and checkpoints
    # faster than level 3, for somewhat larger files (BENCHMARKS.md, "Dedup speed and memory").
    zstd_level: int = 1

    def __post_init__(self) -> None:
        # Checked here, before the JVM starts: a bad -Xmx otherwise ends in JAVA_GATEWAY_EXITED.
        memory = jvm_memory_mb(self.driver_memory)
        if memory is None:
            raise UsageError(f"--driver-memory {self.driver_memory!r} is not a JVM memory size "
                             "(digits and an optional unit k, m, g or t: 4g, 512m)")
        if memory < MIN_DRIVER_MEMORY_MB:
            raise UsageError(f"--driver-memory {self.driver_memory!r} is below Spark's minimum; "
                             f"give at least {MIN_DRIVER_MEMORY_MB}m")
        if self.shuffle_partitions is not None and self.shuffle_partitions < 1:
            raise UsageError("--shuffle-partitions must be at least 1")
        if self.master is not None and not SPARK_MASTER.match(self.master):
            raise UsageError(f"--master {self.master!r} is not a Spark master URL "
                             "(local[N], local[*], spark://HOST:PORT, yarn, k8s://URL)")


# The dedup job's own driver heap when it starts local Spark itself: it needs no more (it runs
# in Spark's default 1 GB under spark-submit, documents of megabytes included), and a 4 GB heap
# lets the JVM grow to 5 GB of resident memory on a 1 GB corpus where 2 GB keeps the whole
# process tree at 3 GB (BENCHMARKS.md, "Dedup speed").
DEDUP_SPARK = SparkConfig(driver_memory="2g")


@dataclass(frozen=True)
class LogConfig:
    """The driver's progress log (``pipelines.logs``): level of corpus-prep's own loggers."""

    level: str = "INFO"
    quiet: bool = False  # warnings and errors only

    @property
    def progress(self) -> bool:
        """Whether progress (INFO) lines are shown."""
        return not self.quiet and self.level in ("DEBUG", "INFO")


@dataclass(frozen=True)
class IndexConfig:
    """Incremental dedup: indexes of earlier runs to deduplicate against, and where this run's goes
    (``pipelines/dedup/index.py`` holds the format, ``pipelines/dedup/against.py`` the matching)."""

    against: tuple[str, ...] = ()  # --against DIR[,DIR…]: indexed documents win and are never rewritten
    save: str | None = None  # --save-index DIR: an index of this run's documents alone
    update: str | None = None  # --update-index DIR: the --against indexes and this run's, combined


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
    # broadcast instead of a shuffle, so no task receives a whole hub (pipelines/dedup/skew.py);
    # verification cuts its pairs into homes of at most this many documents (verify.py).
    hub_degree: int = 10_000
    # Clusters of at least this many documents are listed in stats.json (giant_clusters).
    giant_cluster_size: int = 10_000
    max_cc_rounds: int = 100
    # Up to this many removed ids (8 bytes each) are broadcast to filter rows in place (the
    # texts at the end, the signatures before LSH); beyond it those anti-joins shuffle once.
    # Verification collects up to half as many pairs to home them on the driver (verify.py).
    broadcast_removed_ids: int = 5_000_000
    spark: SparkConfig = DEDUP_SPARK
    index: IndexConfig = field(default_factory=IndexConfig)

    def __post_init__(self) -> None:
        if not 0.0 < self.lsh.threshold < 1.0:
            raise UsageError("--threshold must be in (0, 1)")
        if not 1 <= self.minhash.num_perm <= MAX_NUM_PERM:
            raise UsageError(f"--num-perm must be in [1, {MAX_NUM_PERM}]")
        if (self.lsh.bands is None) != (self.lsh.rows is None):
            raise UsageError("--bands and --rows must be given together")
        if self.lsh.bands is not None and min(self.lsh.bands, self.lsh.rows) < 1:
            raise UsageError("--bands and --rows must be at least 1 (0 would turn near-duplicate detection off)")
        if self.lsh.bands is not None and self.lsh.bands * self.lsh.rows > self.minhash.num_perm:
            raise UsageError("--bands * --rows must not exceed --num-perm")
        if self.keep is KeepPolicy.PRIORITY and not self.keep_priority_column:
            raise UsageError("--keep priority needs --keep-priority COLUMN")
        if not isinstance(self.lsh.verify, VerifyMode):
            raise UsageError(f"lsh.verify must be one of {[m.value for m in VerifyMode]}, not {self.lsh.verify!r}")
        if self.lsh.all_pairs_bucket < 2 or self.lsh.bucket_neighbours < 1:
            raise UsageError("--all-pairs-bucket must be at least 2 and --bucket-neighbours at least 1")
        if self.lsh.uncertain_within_se < 0:
            raise UsageError("--uncertain-within-se must not be negative")
        if not 1 <= self.minhash.ngram <= MAX_NGRAM:
            raise UsageError(f"--ngram must be in [1, {MAX_NGRAM}]")
        if self.hub_degree < 2 or self.giant_cluster_size < 2:
            raise UsageError("--hub-degree and --giant-cluster-size must be at least 2")
        if self.index.update and not self.index.against:
            raise UsageError("--update-index needs --against (the index it extends); use --save-index for a new one")
        if self.index.save and self.index.save in (self.index.update, *self.index.against):
            raise UsageError("--save-index would replace an index this run reads or updates; "
                             "--update-index extends one")


def settings_dict(cfg) -> dict:
    """``dataclasses.asdict(cfg)``, without the index section of a run that uses no index: the
    settings recorded for such runs (``stats.json: config``, prepare's stage fingerprints) stay what
    they were before indexes existed, so their outputs and skip decisions do not change."""
    data = asdict(cfg)
    if getattr(cfg, "index", None) == IndexConfig():
        del data["index"]
    return data


# ---------------------------------------------------------------------------------------
# Tokenize and pack (jobs/pack.py)

TOKENIZER_MODELS = ("byte-bpe", "wordpiece")  # what --train-tokenizer trains
FEATURE_SCHEMES = ("default", "seqio", "maxtext")  # column names of the packed rows (schemas.packed.FEATURE_NAMES)
FORMATS = ("parquet", "tfrecord")  # the packed rows, identical in either (the runtime reads both)
MEGATRON = "megatron"  # the documents unpacked, as Megatron-LM indexed datasets
MAX_SEQ_LEN = 65535  # positions and segment ids are stored as uint16


class PackingMethod(str, Enum):
    """How document pieces fill the rows (``udfs.packing``)."""

    BEST_FIT = "best-fit"  # best-fit decreasing: longest piece first, into the fullest row it fits
    GREEDY = "greedy"  # next-fit: pad the open row when the next piece does not fit


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
    model: str = "byte-bpe"  # one of TOKENIZER_MODELS
    vocab_size: int = 32000
    min_frequency: int = 2
    train_sample_bytes: int = 512 * 2**20
    eos_token: str = "<|endoftext|>"
    bos_token: str | None = None
    pad_token: str = "<|pad|>"
    mask_token: str | None = None  # set for encoder tokenizers: the [MASK] of masked-LM pretraining
    unk_token: str = "[UNK]"  # WordPiece's unknown token (byte-level BPE needs none)

    @property
    def special_tokens(self) -> list[str]:
        """The tokens a trained tokenizer reserves, in id order (pad 0, EOS 1, BOS 2, then MASK, then
        UNK for WordPiece)."""
        return ([t for t in (self.pad_token, self.eos_token, self.bos_token, self.mask_token) if t]
                + ([self.unk_token] if self.model == "wordpiece" else []))


PARQUET_CODECS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")  # what pyarrow writes


@dataclass(frozen=True)
class PackConfig:
    input: InputConfig
    output: str
    seq_len: int = 2048
    overwrite: bool = False
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    packing: PackingMethod = PackingMethod.BEST_FIT  # the value ("greedy") is accepted too
    formats: tuple[str, ...] = FORMATS  # and/or MEGATRON (documents unpacked, .bin/.idx)
    feature_names: str = "default"  # one of FEATURE_SCHEMES: the column names trainers read
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
        if not 2 <= self.seq_len <= MAX_SEQ_LEN:
            raise UsageError(f"--seq-len must be in [2, {MAX_SEQ_LEN}] (positions are stored as uint16)")
        if (self.tokenizer.path is None) == (not self.tokenizer.train):
            raise UsageError("give exactly one of --tokenizer PATH and --train-tokenizer")
        if self.tokenizer.train and self.tokenizer.vocab_size < 300:
            raise UsageError("--vocab-size must be at least 300 (256 bytes + special tokens + merges)")
        if self.tokenizer.model not in TOKENIZER_MODELS:
            raise UsageError(f"--tokenizer-model must be {alternatives(TOKENIZER_MODELS)}")
        if self.tokenizer.path and self.tokenizer.model != TokenizerConfig.model:
            raise UsageError("--tokenizer-model chooses what --train-tokenizer trains; a given --tokenizer is used as is")
        if self.tokenizer.mask_token is not None and self.tokenizer.bos_token is None:
            raise UsageError("--mask-token needs --bos-token: encoder documents are framed [CLS] text [SEP] "
                             "(e.g. --bos-token '[CLS]' --eos-token '[SEP]' --pad-token '[PAD]')")
        reserved = self.tokenizer.special_tokens
        if self.tokenizer.train and len(set(reserved)) != len(reserved):
            raise UsageError(f"special tokens must differ to train a tokenizer: {reserved}")
        methods = [m.value for m in PackingMethod]
        if self.packing not in methods:
            raise UsageError(f"--packing must be {alternatives(methods)}")
        object.__setattr__(self, "packing", PackingMethod(self.packing))
        if not self.formats or set(self.formats) - {*FORMATS, MEGATRON}:
            raise UsageError(f"--formats must be a non-empty subset of {','.join((*FORMATS, MEGATRON))}")
        if self.feature_names not in FEATURE_SCHEMES:
            raise UsageError(f"--feature-names must be {alternatives(FEATURE_SCHEMES)}")
        if self.num_shards is not None and self.num_shards < 1:
            raise UsageError("--num-shards must be at least 1")
        if self.target_shard_bytes < 1:
            raise UsageError("--target-shard-bytes must be positive")
        if self.parquet_compression.lower() not in PARQUET_CODECS:
            raise UsageError(f"--parquet-compression must be one of {', '.join(PARQUET_CODECS)}")
        if self.parquet_row_group_rows < 1:
            raise UsageError("--parquet-row-group-rows must be at least 1")
        specials = 2 if self.tokenizer.bos_token else 1
        if self.max_doc_tokens is not None and self.max_doc_tokens <= specials:
            raise UsageError(f"--max-doc-tokens must exceed the {specials} special token(s) per document")


# ---------------------------------------------------------------------------------------
# End to end (jobs/prepare.py)

PREPARE_STAGES = ("dedup", "pack", "report")


def stage_dir(output: str, stage: str) -> str:
    """Where a stage of an end-to-end run writes: ``OUTPUT/dedup``, ``OUTPUT/pack``."""
    return f"{output.rstrip('/')}/{stage}"


def result_settings(cfg) -> dict:
    """A job config as a dict, less what only says where or how it runs (``output``, ``overwrite``,
    ``spark``): the settings a fingerprint of its result covers."""
    settings = settings_dict(cfg)
    for key in ("output", "overwrite", "spark"):
        settings.pop(key, None)
    return settings


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
            raise UsageError(f"--stages must be a non-empty subset of {','.join(PREPARE_STAGES)}; "
                             f"unknown: {','.join(sorted(unknown))}")


@dataclass(frozen=True)
class ReportConfig:
    """``OUTPUT/report.html`` alone, from the verified stage outputs an earlier run left in ``OUTPUT``."""

    output: str
    spark: SparkConfig = field(default_factory=SparkConfig)
