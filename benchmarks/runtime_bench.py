"""Runtime throughput: training tokens/s, and decoding tokens/s with/without KV cache per precision.

    python -m jobs.pack --input samples/hf_blog_sample.parquet --output /tmp/rt_bench/packed \\
        --seq-len 512 --train-tokenizer --vocab-size 8192 --num-shards 4
    python benchmarks/runtime_bench.py --manifest /tmp/rt_bench/packed --workdir /tmp/rt_bench

Masked-LM pretraining (``--objective mlm``: a BERT of the same size on a manifest packed with
``--mask-token``; training only, there is nothing to decode)::

    python jobs/pack.py --input samples/hf_blog_sample.parquet --output /tmp/rt_bench/packed_mlm \\
        --seq-len 512 --train-tokenizer --tokenizer-model wordpiece --vocab-size 8192 --num-shards 4 \\
        --mask-token '[MASK]' --bos-token '[CLS]' --eos-token '[SEP]' --pad-token '[PAD]'
    python benchmarks/runtime_bench.py --manifest /tmp/rt_bench/packed_mlm --workdir /tmp/rt_bench --objective mlm

Training runs ``runtime.train.train`` (tokens/s counts every position of every packed row,
padding included, and excludes the first step). Decoding forces exactly
``--new-tokens`` new tokens per sequence (``min_new_tokens``) so every variant does the same
work. Variants that need CUDA or bitsandbytes are reported as "not measured" without them.
Prints one JSON object per measurement and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time

import torch
from transformers import AutoTokenizer, BertConfig, LlamaConfig

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.config import GenerateConfig, LoaderConfig, OptimConfig, TrainConfig  # noqa: E402
from runtime.data import PackedManifest  # noqa: E402
from runtime.generate import generation_config  # noqa: E402
from runtime.model import load_for_inference  # noqa: E402
from runtime.train import train  # noqa: E402


def bench_train(args, manifest: PackedManifest) -> tuple[str, dict]:
    config_dir = os.path.join(args.workdir, f"config-{args.objective}")
    size = {"vocab_size": manifest.vocab_size, "hidden_size": args.hidden, "intermediate_size": 4 * args.hidden,
            "num_hidden_layers": args.layers, "num_attention_heads": args.hidden // 64,
            "max_position_embeddings": manifest.seq_len}
    (BertConfig if args.objective == "mlm" else LlamaConfig)(**size).save_pretrained(config_dir)
    output = os.path.join(args.workdir, f"ckpt-{args.objective}")
    shutil.rmtree(output, ignore_errors=True)
    result = train(TrainConfig(manifest=args.manifest, model_config=config_dir, output=output,
                               steps=args.train_steps, progress=False, log_every=args.train_steps,
                               objective=args.objective, loader=LoaderConfig(batch_size=args.batch_size),
                               optim=OptimConfig(warmup_steps=2)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return output, {"measure": "train", "objective": args.objective, "device": device,
                    "tokens_per_s": result.tokens_per_second, "mfu": result.mfu, "batch_rows": args.batch_size,
                    "seq_len": manifest.seq_len, "hidden": args.hidden, "layers": args.layers}


def _variants() -> list[tuple[str, dict, str | None]]:
    """(name, GenerateConfig overrides, reason it cannot run here or None)."""
    cuda = torch.cuda.is_available()
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    gpu_missing = None if cuda else "needs CUDA"
    bnb_missing = gpu_missing or (None if bnb else "needs bitsandbytes")
    return [("fp32-cpu", {"dtype": "float32"}, "CPU figure measured on CPU machines only" if cuda else None),
            ("int8-cpu (dynamic)", {"cpu_int8": True}, "CPU figure measured on CPU machines only" if cuda else None),
            ("bf16-cuda", {"dtype": "bfloat16"}, gpu_missing),
            ("8bit-bnb", {"load_in_8bit": True}, bnb_missing),
            ("4bit-bnb-nf4", {"load_in_4bit": True}, bnb_missing)]


def bench_decode(args, checkpoint: str) -> list[dict]:
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side="left")
    prompts = ["The Hugging Face blog"] * args.decode_batch
    rows = []
    for name, overrides, missing in _variants():
        for cache in (True, False):
            row = {"measure": "decode", "variant": name, "kv_cache": cache, "batch": args.decode_batch,
                   "new_tokens": args.new_tokens}
            if missing:
                rows.append({**row, "tokens_per_s": None, "note": f"not measured: {missing}"})
                continue
            cfg = GenerateConfig(checkpoint=checkpoint, prompt=tuple(prompts), max_new_tokens=args.new_tokens,
                                 use_cache=cache, **overrides)
            model = load_for_inference(cfg)
            gen = generation_config(cfg, model)
            gen.update(min_new_tokens=args.new_tokens)
            inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
            with torch.inference_mode():
                model.generate(**inputs, generation_config=gen)  # warm-up
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = model.generate(**inputs, generation_config=gen)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            new = (out.shape[1] - inputs.input_ids.shape[1]) * out.shape[0]
            rows.append({**row, "tokens_per_s": new / seconds, "device": str(model.device)})
            del model
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--decode-batch", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--objective", choices=["clm", "mlm"], default="clm",
                        help="clm: Llama, then decoding; mlm: BERT masked-LM training only")
    parser.add_argument("--train-only", action="store_true", help="skip the decoding measurements")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    manifest = PackedManifest.load(args.manifest)
    checkpoint, train_row = bench_train(args, manifest)
    print(json.dumps(train_row), flush=True)
    mfu = f"{100 * train_row['mfu']:.1f}%" if train_row["mfu"] else "n/a (CPU)"
    print(f"\n| training ({args.objective}) | {train_row['device']} | {train_row['tokens_per_s']:,.0f} tokens/s "
          f"| MFU {mfu} |")
    if args.objective == "mlm" or args.train_only:
        return
    rows = bench_decode(args, checkpoint)
    for row in rows:
        print(json.dumps(row), flush=True)
    print("\n| decoding variant | KV cache | tokens/s |\n|---|---|---|")
    for row in rows:
        value = f"{row['tokens_per_s']:,.1f}" if row["tokens_per_s"] else row["note"]
        print(f"| {row['variant']} | {'on' if row['kv_cache'] else 'off'} | {value} |")


if __name__ == "__main__":
    main()
