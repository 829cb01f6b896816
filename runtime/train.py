"""Train a causal LM (or, with ``--objective mlm``, an encoder) on packed shards: ``python -m
runtime.train --manifest M --model-config C --steps N --output CKPT_DIR`` (``torchrun
--nproc-per-node K -m runtime.train ...`` for DDP). What differs between objectives lives in
``runtime.objectives``.

Checkpoints go to ``OUTPUT/checkpoint-<step>/`` (``runtime.checkpoints``): a
``save_pretrained`` model plus tokenizer (so ``AutoModelForCausalLM.from_pretrained``, or
``AutoModelForMaskedLM`` for ``mlm``, loads it), ``trainer_state.pt`` holding the optimizer,
scheduler, step and loader state, one RNG file per rank, and a ``COMPLETE`` marker written
last. ``--keep-last N`` keeps the newest N. OUTPUT, the manifest and ``--model-config`` may be
bucket URIs. Re-running the same command resumes from the newest complete checkpoint; on CPU
the resumed run reproduces the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import PreTrainedTokenizerFast

from pipelines.io import uri
from runtime import checkpoints
from runtime.checkpoints import STATE_FILE
from runtime.cli import parse_config
from runtime.config import OptimConfig, TrainConfig
from runtime.data import IGNORE_INDEX, PackedLoader, PackedManifest
from runtime.model import build_model, load_tokenizer, resolve_device
from runtime.objectives import OBJECTIVES, CausalLM, MaskedLM

# Dense bf16 peak of common accelerators (TFLOP/s), matched against the device name in order.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
                    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0))


@dataclass
class TrainResult:
    losses: list[float]  # one per step run by this call
    tokens_per_second: float | None  # all ranks, padding included, excluding this call's first step
    mfu: float | None  # fraction of the GPUs' dense bf16 peak; None on CPU
    xla_compilations: list[int] | None = None  # on XLA: graphs compiled so far, after each step


@dataclass
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def agree(self, flag: bool) -> bool:
        """True on every rank when any rank saw ``flag`` (so all ranks save the same step)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def _init_distributed(device_name: str) -> Distributed:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPUs, gloo on CPU. XLA runs one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device_name == "xla" and world > 1:
        raise ValueError("--device xla trains in one process (one XLA device); multi-chip XLA is not wired up")
    device = resolve_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Distributed(rank=dist.get_rank() if world > 1 else 0, world_size=world, device=device)


def lr_lambda(optim: OptimConfig, steps: int):
    """Linear warmup to ``lr``, then cosine to ``min_lr_ratio * lr`` at ``steps``."""
    def factor(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        progress = min(1.0, (step - optim.warmup_steps) / max(1, steps - optim.warmup_steps))
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def make_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": optim.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=(optim.beta1, optim.beta2), eps=optim.eps)


def _rng_state() -> dict:
    """Every generator's state as tensors, numbers and tuples (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (weights in matmuls) + 12 x layers x hidden x seq_len (attention)."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.config
    return 6.0 * linear + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def peak_flops(cfg: TrainConfig, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    if cfg.peak_tflops:
        return cfg.peak_tflops * 1e12
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS if key in name), None)


def _to_cpu(tree):
    """Tensors of a (nested) state dict moved to the CPU: XLA tensors cannot be pickled or saved as they are."""
    return torch.utils._pytree.tree_map(lambda t: t.cpu() if isinstance(t, torch.Tensor) else t, tree)


def _xla_sync() -> None:
    """Cut the traced step here: one XLA graph per optimizer step, compiled once and then reused."""
    import torch_xla

    torch_xla.sync()


def _xla_compilations() -> int:
    import torch_xla.debug.metrics as met

    data = met.metric_data("CompileTime")
    return int(data[0]) if data else 0


@dataclass
class _Run:
    """What one call trains and checkpoints: built fresh, or restored from the newest complete checkpoint."""

    manifest: PackedManifest
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerFast
    objective: CausalLM | MaskedLM
    loader: PackedLoader
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    step: int = 0
    ddp: DistributedDataParallel | None = None  # the model wrapped for gradient averaging (several ranks)


def save_checkpoint(run: _Run, cfg: TrainConfig, env: Distributed) -> None:
    """Stage ``checkpoint-<step>`` and publish it complete (``runtime.checkpoints``); every rank saves its RNG.

    On a bucket each rank uploads its RNG file straight to the final directory (ranks on other
    hosts share no local disk); the marker the main rank writes after the barrier completes it.
    """
    output, step = cfg.output, run.step
    remote = uri.is_remote(output)
    staging = checkpoints.staging_dir(output, step) if env.main else None
    if env.main and remote:
        uri.delete_dir(checkpoints.step_dir(output, step))  # an interrupted earlier save of this step
    if env.world_size > 1:
        shared = [staging]
        dist.broadcast_object_list(shared, src=0)
        staging = shared[0]
    rng = f"rank-{env.rank:05d}.pt"
    if remote:
        buffer = io.BytesIO()
        torch.save(_rng_state(), buffer)
        uri.write_bytes(uri.join(checkpoints.step_dir(output, step), "rng", rng), buffer.getvalue())
    else:
        os.makedirs(os.path.join(staging, "rng"), exist_ok=True)
        torch.save(_rng_state(), os.path.join(staging, "rng", rng))
    env.barrier()
    if env.main:
        xla = env.device.type == "xla"  # saved from CPU copies; from_pretrained loads them anywhere
        run.model.save_pretrained(staging, state_dict=_to_cpu(run.model.state_dict()) if xla else None)
        run.tokenizer.save_pretrained(staging)
        torch.save(_to_cpu({"step": step, "optimizer": run.optimizer.state_dict(),
                            "scheduler": run.scheduler.state_dict(), "loader": run.loader.state_dict(),
                            "world_size": env.world_size, "config": asdict(cfg)}),
                   os.path.join(staging, STATE_FILE))
        checkpoints.publish(staging, output, step)
        checkpoints.prune(output, cfg.keep_last)
    env.barrier()


def _micro_batches(loader: PackedLoader, count: int, prepare):
    """``count`` batches per step, each ``prepare``d by the objective on the CPU (moved to the device later)."""
    it = iter(loader)
    while True:
        yield [prepare(next(it)) for _ in range(count)]


def _setup(cfg: TrainConfig, env: Distributed) -> _Run:
    """Build the run, or resume it (``--resume``) from the newest complete checkpoint in ``--output``.

    One seed first, so the initial weights are the same on every rank; afterwards each rank's
    generators run on their own seed (dropout), or continue where the checkpoint left them.
    """
    manifest = PackedManifest.load(cfg.manifest)
    kind = OBJECTIVES[cfg.objective]
    attn = kind.attn_implementation(cfg.attn_implementation, env.device)
    overrides = kind.config_overrides(manifest)
    resume = checkpoints.latest_checkpoint(cfg.output) if cfg.resume else None
    _seed_everything(cfg.seed)  # same initial weights on every rank
    if resume:
        state = checkpoints.safe_load(uri.join(resume, STATE_FILE))  # refused before anything else is read
        model = kind.auto_class.from_pretrained(checkpoints.local_copy(resume), dtype=torch.float32,
                                                attn_implementation=attn)
    else:
        model = build_model(checkpoints.local_copy(cfg.model_config), manifest, attn, kind.auto_class, overrides)
    model.to(env.device)
    if env.device.type == "xla":  # moving to XLA makes new Parameters: re-tie input and output embeddings
        model.tie_weights()
    tokenizer = load_tokenizer(manifest, kind.model_input_names(model))
    objective = kind(model, tokenizer, manifest, cfg.masking)
    loader = PackedLoader(manifest, cfg.loader, rank=env.rank, world_size=env.world_size,
                          pin_memory=env.device.type == "cuda")
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.optim, cfg.steps))
    run = _Run(manifest, model, tokenizer, objective, loader, optimizer, scheduler)
    if resume:
        _restore(run, state, resume, env)
    else:
        _seed_everything(cfg.seed + env.rank)  # per-rank dropout streams
    if env.world_size > 1:
        run.ddp = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    return run


def _restore(run: _Run, state: dict, resume: str, env: Distributed) -> None:
    """Optimizer, scheduler, loader position, step and this rank's generators from a checkpoint."""
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.loader.load_state_dict(state["loader"])
    run.step = state["step"]
    rng = uri.join(resume, "rng", f"rank-{env.rank:05d}.pt")
    if uri.exists(rng):  # absent when the world size grew
        _set_rng_state(checkpoints.safe_load(rng))


def _step(run: _Run, micro: list[dict], cfg: TrainConfig, env: Distributed) -> tuple[float, int | None]:
    """One optimizer step over the step's micro-batches (prepared on the CPU).

    The loss is the mean over every target token of the step on all ranks: each micro-batch's
    summed loss is divided by the step's target count. Returns it, and on XLA the graphs compiled
    so far (read at the step's graph cut, before the loss leaves the device).
    """
    xla = env.device.type == "xla"
    bf16 = env.device.type == "cuda" and cfg.bf16
    compute_dtype = torch.bfloat16 if bf16 else torch.float32
    # the loss is summed in float64 where the device has it; XLA (TPU) accumulates in float32
    sum_dtype = torch.float32 if xla else torch.float64
    objective, forward = run.objective, run.ddp or run.model
    # counted on the CPU: no device-to-host read inside the step (on XLA it would cut the graph)
    targets = torch.tensor(sum(int((objective.targets(b) != IGNORE_INDEX).sum()) for b in micro),
                           dtype=sum_dtype).to(env.device)
    on_device = [{k: v.to(env.device, non_blocking=True) for k, v in b.items()} for b in micro]
    if env.world_size > 1:
        dist.all_reduce(targets)
    targets = targets.clamp_min(1)  # a step of padding only must not divide by zero
    total_loss = torch.zeros((), device=env.device, dtype=sum_dtype)
    for i, batch in enumerate(on_device):
        sync = run.ddp is None or i == len(on_device) - 1
        context = contextlib.nullcontext() if sync else forward.no_sync()
        with context, torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=bf16):
            # flash implementations take the batch flattened to (1, B*L): back to (B, L, vocab)
            logits = forward(**objective.model_inputs(batch, compute_dtype)).logits.reshape(
                *batch["input_ids"].shape, -1)
            loss_sum = torch.nn.functional.cross_entropy(
                objective.predictions(logits).flatten(0, 1).float(), objective.targets(batch).flatten(),
                ignore_index=IGNORE_INDEX, reduction="sum")
        # DDP averages gradients over ranks; scaling by world_size makes it a global token mean
        (loss_sum * env.world_size / targets).backward()
        total_loss += loss_sum.detach()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    compiled = None
    if xla:
        _xla_sync()
        compiled = _xla_compilations()
    if env.world_size > 1:
        dist.all_reduce(total_loss)
    return float(total_loss / targets), compiled


class _Meter:
    """The progress bar, a line every ``--log-every`` steps (loss, learning rate, tokens/s over the
    steps since the last line, MFU on GPUs), and the call's throughput for ``TrainResult``, which
    leaves out the call's first step: it pays for worker start-up and lazy initialization."""

    def __init__(self, cfg: TrainConfig, env: Distributed, run: _Run, stop_at: int) -> None:
        self.cfg, self.env, self.stop_at = cfg, env, stop_at
        self.peak = peak_flops(cfg, env.device)
        self.fpt = flops_per_token(run.model, run.manifest.seq_len)
        self.bar = tqdm(total=cfg.steps, initial=run.step, disable=not (cfg.progress and env.main),
                        dynamic_ncols=True, file=sys.stderr)
        self.losses: list[float] = []
        self.compilations: list[int] | None = [] if env.device.type == "xla" else None
        self.window_tokens, self.window_start = 0, time.perf_counter()
        self.measured_tokens, self.measured_seconds = 0, 0.0

    def record(self, run: _Run, loss: float, tokens: int, step_start: float, compiled: int | None) -> None:
        """After step ``run.step``: its loss, its tokens (all ranks, padding included), when it began."""
        if compiled is not None:
            self.compilations.append(compiled)
        self.losses.append(loss)
        self.window_tokens += tokens
        if len(self.losses) > 1:
            self.measured_tokens += tokens
            self.measured_seconds += time.perf_counter() - step_start
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}")
        if run.step % self.cfg.log_every == 0 or run.step == self.stop_at:
            self._line(run, loss)

    def _line(self, run: _Run, loss: float) -> None:
        if self.env.device.type == "cuda":
            torch.cuda.synchronize()
        tps = self.window_tokens / (time.perf_counter() - self.window_start)
        line = (f"step {run.step}/{self.cfg.steps} loss {loss:.4f} lr {run.scheduler.get_last_lr()[0]:.3e} "
                f"tokens/s {tps:,.0f}")
        if self.peak:
            line += f" mfu {100 * tps * self.fpt / (self.peak * self.env.world_size):.1f}%"
        if self.env.main:
            self.bar.write(line)
        self.window_tokens, self.window_start = 0, time.perf_counter()

    def result(self) -> TrainResult:
        self.bar.close()
        tps = self.measured_tokens / self.measured_seconds if self.measured_seconds else None
        mfu = tps * self.fpt / (self.peak * self.env.world_size) if tps and self.peak else None
        return TrainResult(self.losses, tps, mfu, self.compilations)


@contextlib.contextmanager
def _preemption():
    """``{"requested": bool}``, set by SIGTERM (preemption) while the block runs: the loop then
    finishes its step, saves and stops. Only the main thread can take the signal."""
    flag = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: flag.update(requested=True))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) training up to ``--steps`` (or ``--stop-after``)."""
    env = _init_distributed(cfg.device)
    run = _setup(cfg, env)
    stop_at = cfg.stop_after or cfg.steps
    with _preemption() as preempted:
        meter = _Meter(cfg, env, run, stop_at)
        batches = _micro_batches(run.loader, cfg.grad_accum, run.objective.prepare)
        run.model.train()
        while run.step < stop_at:
            step_start = time.perf_counter()
            micro = next(batches)
            loss, compiled = _step(run, micro, cfg, env)
            run.step += 1
            meter.record(run, loss, sum(b["input_ids"].numel() for b in micro) * env.world_size, step_start, compiled)
            stopping = env.agree(preempted["requested"])
            if stopping or run.step == stop_at or (cfg.save_every and run.step % cfg.save_every == 0):
                save_checkpoint(run, cfg, env)
            if stopping:
                break
        result = meter.result()
    if env.world_size > 1:
        dist.destroy_process_group()
    return result


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(TrainConfig, argv, "Train a causal LM (--objective clm) or an encoder (mlm) on packed shards.")
    try:
        result = train(cfg)
    except (ValueError, OSError) as err:  # a missing or invalid manifest, config or checkpoint: one line, exit 2
        print(f"error: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}",
              file=sys.stderr)
        raise SystemExit(2) from None
    if os.environ.get("RANK", "0") == "0" and result.losses:
        summary = f"done: {len(result.losses)} steps, last loss {result.losses[-1]:.4f}"
        if result.tokens_per_second:
            summary += f", {result.tokens_per_second:,.0f} tokens/s"
        if result.mfu:
            summary += f", MFU {100 * result.mfu:.1f}%"
        print(summary)


if __name__ == "__main__":
    main()
