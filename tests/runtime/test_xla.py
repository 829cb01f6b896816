"""PyTorch/XLA: the same model and loop on an XLA device (PJRT_DEVICE=CPU here, TPU in production).

Needs torch-xla, which pins its own torch, so it runs in a second environment
(``scripts/setup.sh --xla`` makes ``.venv-xla``; ``.ci/run`` runs this file there with
``CORPUS_PREP_REQUIRE=torch_xla``, which turns the skip below into a failure).
"""

from __future__ import annotations

import os

import pytest
import torch

from runtime.checkpoints import latest_checkpoint
from runtime.config import GenerateConfig, LoaderConfig, OptimConfig, TrainConfig
from runtime.train import train
from tests.conftest import optional_import

os.environ.setdefault("PJRT_DEVICE", "CPU")
optional_import("torch_xla")  # in .venv-xla only (scripts/setup.sh --xla; .ci/run runs it there)
# XLA's runtime started before any backward runs: autograd sizes its per-device queues at the first
# backward, so a CPU step before would leave XLA without one (an INTERNAL ASSERT in engine.cpp)
import torch_xla  # noqa: E402
import torch_xla.backends  # noqa: E402

torch_xla.device()
torch_xla.backends.set_mat_mul_precision("highest")  # float32 matmuls, as on the CPU (TPUs default to bf16 passes)
STEPS = 4
TOLERANCE = 1e-5  # per-step loss, absolute: float32 on both (measured: <= 8e-7), XLA fuses and reorders sums


def _cfg(packed_dir, model_config, output, device) -> TrainConfig:
    return TrainConfig(manifest=packed_dir, model_config=model_config, output=output, steps=STEPS, device=device,
                       progress=False, log_every=1000, loader=LoaderConfig(batch_size=4),
                       optim=OptimConfig(lr=1e-3, warmup_steps=2))


@pytest.fixture(scope="module")
def runs(packed_dir, tiny_model_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("xla")
    cpu = train(_cfg(packed_dir, tiny_model_config, str(root / "cpu"), "cpu"))
    xla = train(_cfg(packed_dir, tiny_model_config, str(root / "xla"), "xla"))
    return cpu, xla, latest_checkpoint(str(root / "cpu")), latest_checkpoint(str(root / "xla"))


def test_xla_steps_match_the_cpu_loop(runs):
    cpu, xla, _, _ = runs
    assert len(xla.losses) == STEPS
    torch.testing.assert_close(torch.tensor(xla.losses), torch.tensor(cpu.losses), atol=TOLERANCE, rtol=0)


def test_one_graph_compiled_once(runs):
    """After the second step nothing is compiled again: static shapes, the step cut at one sync."""
    _, xla, _, _ = runs
    counts = xla.xla_compilations
    assert counts[0] >= 1 and counts[1:] == [counts[1]] * (STEPS - 1), counts


def test_xla_checkpoint_loads_with_from_pretrained(runs):
    from transformers import AutoModelForCausalLM

    _, _, cpu_ckpt, xla_ckpt = runs
    a = AutoModelForCausalLM.from_pretrained(cpu_ckpt)
    b = AutoModelForCausalLM.from_pretrained(xla_ckpt)
    for (name, pa_), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa_, pb, atol=1e-4, rtol=1e-3, msg=name)


def test_greedy_generate_on_xla_equals_cpu(runs):
    from transformers import AutoTokenizer

    from runtime.generate import generate, generation_config
    from runtime.model import load_for_inference

    _, _, _, ckpt = runs
    prompts = ["The model", "Hugging Face is"]
    out = {}
    for device in ("cpu", "xla"):
        cfg = GenerateConfig(checkpoint=ckpt, prompt=tuple(prompts), max_new_tokens=8, device=device)
        model = load_for_inference(cfg)
        assert model.device.type == device
        out[device] = generate(model, AutoTokenizer.from_pretrained(ckpt), prompts, generation_config(cfg, model))
    assert out["xla"] == out["cpu"]
