"""Training: bit-exact resume on CPU, a loadable checkpoint, DDP equivalence, learning."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from runtime.config import LoaderConfig, OptimConfig, TrainConfig
from runtime.data import PackedLoader, PackedManifest
from runtime.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg(packed_dir, model_config, output, steps, workers=0, **kw) -> TrainConfig:
    return TrainConfig(manifest=packed_dir, model_config=model_config, output=output, steps=steps,
                       grad_accum=2, progress=False, log_every=1000,
                       loader=LoaderConfig(batch_size=4, num_workers=workers),
                       optim=OptimConfig(lr=1e-3, warmup_steps=2), **kw)


def test_resume_reproduces_the_uninterrupted_run(packed_dir, tiny_model_config, tmp_path):
    straight = train(_cfg(packed_dir, tiny_model_config, str(tmp_path / "a"), 8)).losses
    first = train(_cfg(packed_dir, tiny_model_config, str(tmp_path / "b"), 8, stop_after=3)).losses
    # the resumed half uses a different worker count: the loader state does not depend on it
    second = train(_cfg(packed_dir, tiny_model_config, str(tmp_path / "b"), 8, workers=2)).losses
    assert len(first) == 3 and len(second) == 5
    assert first + second == straight  # exact float equality
    a = AutoModelForCausalLM.from_pretrained(str(tmp_path / "a"))
    b = AutoModelForCausalLM.from_pretrained(str(tmp_path / "b"))
    for (name, pa_), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa_, pb), name
    state = torch.load(str(tmp_path / "b" / "trainer_state.pt"), weights_only=False)
    assert state["step"] == 8 and state["loader"]["consumed"] == 8 * 2 * 4


def test_checkpoint_is_a_standard_transformers_directory(packed_dir, tiny_model_config, tmp_path):
    out = str(tmp_path / "ckpt")
    train(_cfg(packed_dir, tiny_model_config, out, 2))
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    manifest = PackedManifest.load(packed_dir)
    assert model.config.vocab_size == manifest.vocab_size
    assert tokenizer.eos_token_id == model.generation_config.eos_token_id == manifest.eos_id
    ids = tokenizer("Hugging Face blog", return_tensors="pt").input_ids
    assert model(ids).logits.shape == (1, ids.shape[1], manifest.vocab_size)


def test_ddp_matches_a_single_process_with_the_same_global_batch(packed_dir, tiny_model_config, tmp_path):
    """2 ranks x 2 rows see exactly the rows of 1 rank x 4 rows, so the losses must agree."""
    out = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "runtime.train", "--manifest", packed_dir, "--model-config", tiny_model_config,
           "--output", out, "--steps", "3", "--batch-size", "2", "--lr", "1e-3", "--warmup-steps", "1",
           "--no-progress", "--log-every", "1"]
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = [float(line.split(" loss ")[1].split()[0]) for line in proc.stdout.splitlines() if line.startswith("step ")]
    single = train(TrainConfig(manifest=packed_dir, model_config=tiny_model_config, output=str(tmp_path / "one"),
                               steps=3, progress=False, loader=LoaderConfig(batch_size=4),
                               optim=OptimConfig(lr=1e-3, warmup_steps=1))).losses
    assert len(ddp) == 3
    np.testing.assert_allclose(ddp, single, atol=1e-4)  # printed with 4 decimals
    state = torch.load(os.path.join(out, "trainer_state.pt"), weights_only=False)
    assert state["world_size"] == 2 and state["loader"]["consumed"] == 3 * 2 * 2
    assert sorted(os.listdir(os.path.join(out, "rng"))) == ["rank-00000.pt", "rank-00001.pt"]


def unigram_entropy(packed_dir: str) -> float:
    """Cross-entropy (nats) of the best context-free predictor: the corpus' own unigram distribution."""
    counts = np.zeros(PackedManifest.load(packed_dir).vocab_size)
    for batch in PackedLoader(packed_dir, LoaderConfig(batch_size=64, shuffle=False), epochs=1):
        targets = batch["labels"][:, 1:]
        np.add.at(counts, targets[targets >= 0].numpy(), 1)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@pytest.mark.slow
def test_loss_falls_well_below_the_unigram_baseline(packer, sample_texts, tmp_path):
    """The whole blog sample, packed by the pack job; under one epoch, so every step's rows are unseen."""
    corpus = packer(sample_texts, str(tmp_path), num_shards=4)
    manifest = PackedManifest.load(corpus)
    rows = sum(s.rows for s in manifest.shard_list("parquet"))
    config = str(tmp_path / "config")
    LlamaConfig(vocab_size=manifest.vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=256).save_pretrained(config)
    steps, batch = 300, 16
    assert steps * batch < rows
    losses = train(TrainConfig(manifest=corpus, model_config=config, output=str(tmp_path / "c"), steps=steps,
                               progress=False, log_every=50, loader=LoaderConfig(batch_size=batch),
                               optim=OptimConfig(lr=3e-3, warmup_steps=20))).losses
    baseline = unigram_entropy(corpus)
    final = float(np.mean(losses[-20:]))
    print(json.dumps({"unigram_nats": baseline, "uniform_nats": math.log(manifest.vocab_size),
                      "first_loss": losses[0], "mean_loss_last_20_steps": final,
                      "rows_seen": steps * batch, "rows": rows}))
    assert final < 0.75 * baseline


def test_sigterm_saves_a_checkpoint_that_resumes(packed_dir, tiny_model_config, tmp_path):
    out = str(tmp_path / "preempted")
    cmd = [sys.executable, "-m", "runtime.train", "--manifest", packed_dir, "--model-config", tiny_model_config,
           "--output", out, "--steps", "100000", "--batch-size", "2", "--no-progress", "--log-every", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
    for line in proc.stdout:  # the handler is installed before the first step runs
        if line.startswith("step "):
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.read()
    assert proc.wait(timeout=120) == 0
    state = torch.load(os.path.join(out, "trainer_state.pt"), weights_only=False)
    assert 2 <= state["step"] < 100000
    assert state["loader"]["consumed"] == state["step"] * 2
    resumed = train(TrainConfig(manifest=packed_dir, model_config=tiny_model_config, output=out, steps=100000,
                                stop_after=state["step"] + 1, progress=False, loader=LoaderConfig(batch_size=2)))
    assert len(resumed.losses) == 1
