"""Generate text from a checkpoint: ``python -m runtime.generate --checkpoint CKPT_DIR --prompt TEXT
[--prompt TEXT ...] [--num-beams K] [--do-sample --temperature T --top-k K --top-p P --seed S]
--max-new-tokens N``.

``--checkpoint`` is a model directory or a training output (its newest complete
``checkpoint-<step>``), local or on a bucket.

Decoding is ``model.generate`` with a ``GenerationConfig`` built from the flags (greedy,
sampling, beam search; stop at EOS). Several prompts form one left-padded batch. Each
prompt's text followed by its continuation is printed, separated by blank lines.
"""

from __future__ import annotations

import dataclasses
import sys

import torch
from transformers import AutoTokenizer, GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase, set_seed

from runtime.checkpoints import local_copy, resolve_model_dir
from runtime.cli import parse_config
from runtime.config import GenerateConfig
from runtime.model import load_for_inference


def generation_config(cfg: GenerateConfig, model: PreTrainedModel) -> GenerationConfig:
    """The checkpoint's generation config (EOS, pad) updated with the decoding flags."""
    gen = GenerationConfig.from_dict(model.generation_config.to_dict())
    gen.update(max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, num_beams=cfg.num_beams,
               length_penalty=cfg.length_penalty, early_stopping=cfg.early_stopping, use_cache=cfg.use_cache)
    if cfg.do_sample:
        gen.update(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
    else:  # greedy/beam: sampling knobs would only trigger warnings
        gen.update(temperature=None, top_k=None, top_p=None)
    return gen


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
             gen: GenerationConfig, seed: int | None = None) -> list[str]:
    """Prompt + continuation for each prompt, decoded as one left-padded batch."""
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True).to(model.device)
    if seed is not None:
        set_seed(seed)
    # XLA tensors cannot be inference tensors (no version counter): plain no_grad there
    with torch.no_grad() if model.device.type == "xla" else torch.inference_mode():
        out = model.generate(**inputs, generation_config=gen)
    return tokenizer.batch_decode(out, skip_special_tokens=True)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(GenerateConfig, argv, "Generate text from a checkpoint.")
    try:  # a training output means its newest complete checkpoint; a bucket URI is fetched first
        cfg = dataclasses.replace(cfg, checkpoint=local_copy(resolve_model_dir(cfg.checkpoint)))
        model = load_for_inference(cfg)
    except (RuntimeError, ValueError, OSError) as err:
        sys.exit(f"error: {err}")
    if cfg.print_device_map:
        print(f"device map: {getattr(model, 'hf_device_map', {'': str(model.device)})}", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(cfg.checkpoint)
    texts = generate(model, tokenizer, list(cfg.prompt), generation_config(cfg, model), cfg.seed)
    print("\n\n".join(texts))


if __name__ == "__main__":
    main()
