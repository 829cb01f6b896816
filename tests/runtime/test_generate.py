"""Generation: the CLI equals transformers' generate, batching, seeds, quantization and placement."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from runtime import generate as gen_cli
from runtime.checkpoints import latest_checkpoint
from runtime.config import GenerateConfig, LoaderConfig, OptimConfig, TrainConfig
from runtime.model import load_for_inference
from runtime.train import train

PROMPTS = ["The model", "Hugging Face is a company that", "In this blog post we"]


@pytest.fixture(scope="module")
def checkpoint(packed_dir, tiny_model_config, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("gen") / "ckpt")
    # two small steps: a real checkpoint whose near-random weights keep greedy and beam outputs apart
    train(TrainConfig(manifest=packed_dir, model_config=tiny_model_config, output=out, steps=2, progress=False,
                      loader=LoaderConfig(batch_size=4), optim=OptimConfig(lr=1e-4, warmup_steps=1)))
    return latest_checkpoint(out)


def _cli(capsys, checkpoint, *flags) -> list[str]:
    argv = ["--checkpoint", checkpoint, *[a for p in PROMPTS for a in ("--prompt", p)], *flags]
    gen_cli.main(argv)
    return capsys.readouterr().out.rstrip("\n").split("\n\n")


def _direct(checkpoint, **settings) -> list[str]:
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side="left")
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    out = model.generate(**inputs, **settings)
    return tokenizer.batch_decode(out, skip_special_tokens=True)


def test_greedy_equals_transformers_generate(capsys, checkpoint):
    printed = _cli(capsys, checkpoint, "--max-new-tokens", "12")
    assert printed == _direct(checkpoint, max_new_tokens=12, do_sample=False)
    assert all(p.startswith(prompt) and len(p) > len(prompt) for p, prompt in zip(printed, PROMPTS))


def test_beam_search_equals_transformers_generate(capsys, checkpoint):
    printed = _cli(capsys, checkpoint, "--max-new-tokens", "10", "--num-beams", "4",
                   "--length-penalty", "0.6", "--early-stopping")
    assert printed == _direct(checkpoint, max_new_tokens=10, num_beams=4, length_penalty=0.6,
                              early_stopping=True, do_sample=False)
    assert printed != _cli(capsys, checkpoint, "--max-new-tokens", "10")  # beams change the result


def test_left_padded_batch_equals_prompts_alone(checkpoint):
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    gen = GenerationConfig.from_dict({**model.generation_config.to_dict(), "max_new_tokens": 12, "do_sample": False})
    batched = gen_cli.generate(model, tokenizer, PROMPTS, gen)
    assert batched == [gen_cli.generate(model, tokenizer, [p], gen)[0] for p in PROMPTS]


def test_sampling_is_reproducible_with_a_seed(capsys, checkpoint):
    flags = ("--max-new-tokens", "16", "--do-sample", "--temperature", "1.3", "--top-k", "40", "--top-p", "0.95")
    first = _cli(capsys, checkpoint, *flags, "--seed", "7")
    assert first == _cli(capsys, checkpoint, *flags, "--seed", "7")
    assert first != _cli(capsys, checkpoint, *flags, "--seed", "8")


def test_kv_cache_does_not_change_greedy_output(capsys, checkpoint):
    assert _cli(capsys, checkpoint, "--max-new-tokens", "8", "--no-use-cache") == \
        _cli(capsys, checkpoint, "--max-new-tokens", "8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
@pytest.mark.parametrize("flag", ["--load-in-8bit", "--load-in-4bit"])
def test_bitsandbytes_flags_explain_what_is_missing(capsys, checkpoint, flag):
    with pytest.raises(SystemExit) as exc:
        gen_cli.main(["--checkpoint", checkpoint, "--prompt", "x", flag])
    assert "needs a CUDA GPU" in str(exc.value) and "--cpu-int8" in str(exc.value)


def test_cpu_int8_quantizes_linears_and_stays_close(checkpoint):
    ref = load_for_inference(GenerateConfig(checkpoint=checkpoint, prompt=("x",), dtype="float32"))
    q = load_for_inference(GenerateConfig(checkpoint=checkpoint, prompt=("x",), cpu_int8=True))
    linears = [m for m in q.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m.weight).__module__.startswith("torchao") for m in linears)  # int8 weights
    ids = AutoTokenizer.from_pretrained(checkpoint)(PROMPTS[1], return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = ref(ids).logits.softmax(-1), q(ids).logits.softmax(-1)
    assert (a - b).abs().sum(-1).max() < 0.1  # total variation per position


def test_device_map_comes_from_from_pretrained(capsys, checkpoint, tmp_path):
    roomy = load_for_inference(GenerateConfig(checkpoint=checkpoint, prompt=("x",), device_map="balanced",
                                              max_memory="cpu=1GiB"))
    # transformers records hf_device_map only for a map spanning several devices
    assert {str(d) for d in getattr(roomy, "hf_device_map", {"": roomy.device}).values()} == {"cpu"}
    tight = load_for_inference(GenerateConfig(checkpoint=checkpoint, prompt=("x",), device_map="sequential",
                                              max_memory="cpu=60KiB", offload_folder=str(tmp_path / "off")))
    assert "disk" in tight.hf_device_map.values()  # what does not fit the budget is offloaded
    placed = _cli(capsys, checkpoint, "--max-new-tokens", "8", "--device-map", "auto", "--max-memory", "cpu=1GiB")
    assert placed == _cli(capsys, checkpoint, "--max-new-tokens", "8")
