"""Training: bit-exact resume on CPU, loadable step-numbered checkpoints (also on fsspec/file URIs),
safe resume state, DDP equivalence, one-line errors, learning."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from pipelines.io import uri
from runtime import train as train_cli
from runtime.checkpoints import COMPLETE, STATE_FILE, latest_checkpoint
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
    a = AutoModelForCausalLM.from_pretrained(latest_checkpoint(str(tmp_path / "a")))
    b = AutoModelForCausalLM.from_pretrained(latest_checkpoint(str(tmp_path / "b")))
    for (name, pa_), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa_, pb), name
    assert sorted(os.listdir(tmp_path / "b")) == ["checkpoint-3", "checkpoint-8"]
    state = torch.load(str(tmp_path / "b" / "checkpoint-8" / STATE_FILE), weights_only=True)
    assert state["step"] == 8 and state["loader"]["consumed"] == 8 * 2 * 4


def test_checkpoint_is_a_standard_transformers_directory(packed_dir, tiny_model_config, tmp_path):
    out = str(tmp_path / "ckpt")
    train(_cfg(packed_dir, tiny_model_config, out, 2))
    model = AutoModelForCausalLM.from_pretrained(os.path.join(out, "checkpoint-2"))
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(out, "checkpoint-2"))
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
    state = torch.load(os.path.join(out, "checkpoint-3", STATE_FILE), weights_only=True)
    assert state["world_size"] == 2 and state["loader"]["consumed"] == 3 * 2 * 2
    assert sorted(os.listdir(os.path.join(out, "checkpoint-3", "rng"))) == ["rank-00000.pt", "rank-00001.pt"]


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
    state = torch.load(os.path.join(latest_checkpoint(out), STATE_FILE), weights_only=True)
    assert 2 <= state["step"] < 100000
    assert state["loader"]["consumed"] == state["step"] * 2
    resumed = train(TrainConfig(manifest=packed_dir, model_config=tiny_model_config, output=out, steps=100000,
                                stop_after=state["step"] + 1, progress=False, loader=LoaderConfig(batch_size=2)))
    assert len(resumed.losses) == 1


def test_keep_last_and_resume_from_the_newest_complete_checkpoint(packed_dir, tiny_model_config, tmp_path):
    out = str(tmp_path / "kept")
    train(_cfg(packed_dir, tiny_model_config, out, 8, stop_after=6, save_every=2, keep_last=2))
    assert sorted(os.listdir(out)) == ["checkpoint-4", "checkpoint-6"]
    # a save killed before its marker: newer, but not complete, so resume ignores it
    shutil.copytree(os.path.join(out, "checkpoint-6"), os.path.join(out, "checkpoint-7"))
    os.remove(os.path.join(out, "checkpoint-7", COMPLETE))
    assert latest_checkpoint(out).endswith("checkpoint-6")
    resumed = train(_cfg(packed_dir, tiny_model_config, out, 8, keep_last=2)).losses
    assert len(resumed) == 2  # steps 7 and 8, from checkpoint-6
    assert sorted(os.listdir(out)) == ["checkpoint-6", "checkpoint-8"]  # the stale partial save is gone


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_manifest_shards_and_checkpoints_on_uris(packed_dir, tiny_model_config, tmp_path, scheme):
    """fsspec's memory:// (through pyarrow's FSSpecHandler) and file://: read, save, resume, load."""
    if scheme == "memory":
        root = f"memory://bucket-{tmp_path.name}"
        uri.upload_dir(packed_dir, root + "/packed")
        uri.upload_dir(tiny_model_config, root + "/config")
        manifest, config = root + "/packed", root + "/config"
    else:
        root, manifest, config = f"file://{tmp_path}", f"file://{packed_dir}", f"file://{tiny_model_config}"
    local = train(_cfg(packed_dir, tiny_model_config, str(tmp_path / "local"), 4)).losses
    first = train(_cfg(manifest, config, root + "/ckpt", 4, stop_after=2)).losses
    second = train(_cfg(manifest, config, root + "/ckpt", 4)).losses
    assert first + second == local
    assert uri.listdir(root + "/ckpt") == ["checkpoint-2", "checkpoint-4"]
    assert uri.exists(root + "/ckpt/checkpoint-4/rng/rank-00000.pt")
    state = torch.load(io.BytesIO(uri.read_bytes(root + "/ckpt/checkpoint-4/" + STATE_FILE)), weights_only=True)
    assert state["step"] == 4


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_in_a_checkpoint_is_refused(packed_dir, tiny_model_config, tmp_path, capsys):
    out = str(tmp_path / "tampered")
    train(_cfg(packed_dir, tiny_model_config, out, 4, stop_after=2))
    marker = str(tmp_path / "payload-ran")
    state_file = os.path.join(out, "checkpoint-2", STATE_FILE)
    state = torch.load(state_file, weights_only=True)
    torch.save({**state, "loader": _Payload(marker)}, state_file)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--manifest", packed_dir, "--model-config", tiny_model_config, "--output", out,
                        "--steps", "4", "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and not os.path.exists(marker)
    assert err.startswith("error: ") and "refused" in err and "io.open" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("problem", ["missing manifest", "invalid manifest", "missing config", "invalid config"])
def test_setup_errors_are_one_line_exit_2(packed_dir, tiny_model_config, tmp_path, capsys, problem):
    manifest, config = packed_dir, tiny_model_config
    if problem == "missing manifest":
        manifest = str(tmp_path / "nowhere")
    elif problem == "invalid manifest":
        manifest = str(tmp_path / "bad")
        shutil.copytree(packed_dir, manifest)
        with open(os.path.join(manifest, "manifest.json"), "w") as fh:
            fh.write('{"seq_len": "long"}')
    elif problem == "missing config":
        config = str(tmp_path / "no-config")
    else:
        config = str(tmp_path / "bad-config")
        os.makedirs(config)
        with open(os.path.join(config, "config.json"), "w") as fh:
            fh.write("{not json")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--manifest", manifest, "--model-config", config, "--output", str(tmp_path / "o"),
                        "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
