"""Typed configuration for the runtime: the one place where every default lives.

The command-line parsers of ``runtime.train`` and ``runtime.generate`` are generated from
these dataclasses (see ``runtime.cli``), so a default changed here changes the CLI, the
tests and the benchmarks together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.config import FORMATS
from pipelines.errors import alternatives


@dataclass(frozen=True)
class LoaderConfig:
    """How packed rows are read, shuffled and batched (per rank)."""

    shard_format: str = "parquet"  # one of the pack job's FORMATS: they carry identical rows
    batch_size: int = 8  # packed rows per micro-batch on each rank
    shuffle_seed: int = 0
    shuffle: bool = True
    # Shards mixed by one shuffle window; each DataLoader worker holds up to twice this many
    # decoded shards in memory, so it bounds both shuffle quality and memory.
    shuffle_shards: int = 4
    num_workers: int = 0
    verify_checksums: bool = True  # sha256 of every shard is checked when it is first read

    def __post_init__(self) -> None:
        if self.shard_format not in FORMATS:
            raise ValueError(f"--shard-format must be {alternatives(FORMATS)}")
        if self.batch_size < 1 or self.shuffle_shards < 1 or self.num_workers < 0:
            raise ValueError("--batch-size and --shuffle-shards must be >= 1, --num-workers >= 0")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping


@dataclass(frozen=True)
class MaskingConfig:
    """Masked-LM corruption (``--objective mlm``), BERT's recipe as in transformers'
    ``DataCollatorForLanguageModeling``: ``mlm_probability`` of the non-special tokens are
    selected; of those ``mask_replace_prob`` become [MASK], ``random_replace_prob`` a random
    token, and the rest stay as they are (all are predicted)."""

    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.mlm_probability < 1:
            raise ValueError("--mlm-probability must be in (0, 1)")
        if min(self.mask_replace_prob, self.random_replace_prob) < 0 or \
                self.mask_replace_prob + self.random_replace_prob > 1:
            raise ValueError("--mask-replace-prob and --random-replace-prob must be >= 0 and sum to <= 1")


OBJECTIVES = ("clm", "mlm")
DEVICES = ("auto", "cpu", "cuda", "xla")


@dataclass(frozen=True)
class TrainConfig:
    manifest: str
    model_config: str  # config.json, or a local model directory (its weights are loaded if present)
    output: str  # local path or URI; holds checkpoint-<step>/ directories (runtime.checkpoints)
    steps: int  # optimizer steps; also the length of the cosine schedule
    grad_accum: int = 1
    seed: int = 0
    save_every: int = 0  # 0: save only at the end (and on SIGTERM)
    keep_last: int = 0  # complete checkpoints kept (the newest); 0 keeps all
    stop_after: int | None = None  # exit (after saving) at this step, e.g. for time-sliced jobs
    resume: bool = True  # continue from OUTPUT when it holds a trainer state
    log_every: int = 10
    device: str = "auto"  # auto (CUDA when visible, else CPU) | cpu | cuda | xla (PyTorch/XLA: TPU, PJRT_DEVICE=CPU)
    attn_implementation: str | None = None  # None: CUDA flash_attention_2 if installed, else flex; sdpa elsewhere
    bf16: bool = True  # bf16 autocast; only applied on CUDA (CPU training is always float32)
    peak_tflops: float | None = None  # accelerator peak for MFU; None: looked up from the GPU name
    progress: bool = True
    # clm: next-token prediction (AutoModelForCausalLM); mlm: masked-LM pretraining of an encoder
    # (AutoModelForMaskedLM: BERT, RoBERTa, ModernBERT) on a manifest packed with --mask-token
    objective: str = "clm"
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.grad_accum < 1:
            raise ValueError("--steps and --grad-accum must be >= 1")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}")
        if self.stop_after is not None and not 0 < self.stop_after <= self.steps:
            raise ValueError("--stop-after must be in [1, --steps]")
        if self.device not in DEVICES:
            raise ValueError(f"--device must be one of {', '.join(DEVICES)}")
        if self.keep_last < 0:
            raise ValueError("--keep-last must be >= 0 (0 keeps every checkpoint)")


@dataclass(frozen=True)
class GenerateConfig:
    checkpoint: str
    prompt: tuple[str, ...]  # several prompts are decoded as one left-padded batch
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    seed: int | None = None  # seeds sampling; None leaves torch's generator alone
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    use_cache: bool = True
    load_in_8bit: bool = False  # bitsandbytes, CUDA only
    load_in_4bit: bool = False  # bitsandbytes NF4, CUDA only
    cpu_int8: bool = False  # torch dynamic int8 quantization of the Linear layers, CPU only
    device_map: str | None = None  # auto | balanced | sequential: from_pretrained(device_map=...) plans it
    max_memory: str | None = None  # e.g. "0=20GiB,1=20GiB,cpu=64GiB"
    offload_folder: str | None = None  # where layers that fit neither GPUs nor --max-memory's cpu go
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU; or float32 | bfloat16 | float16
    print_device_map: bool = False
    device: str = "auto"  # auto | cpu | cuda | xla (greedy/sampling on an XLA device; no device map there)

    def __post_init__(self) -> None:
        if sum((self.load_in_8bit, self.load_in_4bit, self.cpu_int8)) > 1:
            raise ValueError("choose at most one of --load-in-8bit, --load-in-4bit, --cpu-int8")
        if self.device_map not in (None, "auto", "balanced", "sequential"):
            raise ValueError("--device-map must be auto, balanced or sequential")
        if self.device not in DEVICES:
            raise ValueError(f"--device must be one of {', '.join(DEVICES)}")
        if self.device == "xla" and (self.device_map or self.load_in_8bit or self.load_in_4bit or self.cpu_int8):
            raise ValueError("--device xla runs the whole model on the XLA device: drop --device-map and quantization")
        if self.max_new_tokens < 1 or self.num_beams < 1:
            raise ValueError("--max-new-tokens and --num-beams must be >= 1")


INFER_TASKS = ("fill-mask", "next-sentence", "question-answering", "text-classification")


@dataclass(frozen=True)
class InferConfig:
    checkpoint: str
    task: str  # one of INFER_TASKS; the checkpoint must hold that task's head
    input: str  # JSON lines (path or URI), one object per input; fields per task in runtime.infer.TASKS
    output: str | None = None  # JSON lines (path or URI), one per input line, in order; None: stdout
    batch_size: int = 8
    top_k: int | None = None  # answers per input; None: the pipeline's default (fill-mask 5, others 1)

    def __post_init__(self) -> None:
        if self.task not in INFER_TASKS:
            raise ValueError(f"--task must be one of {', '.join(INFER_TASKS)}")
        if self.batch_size < 1 or (self.top_k is not None and self.top_k < 1):
            raise ValueError("--batch-size and --top-k must be >= 1")
