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

Packed attention on CUDA (``--attention``; synthetic packed rows, no manifest needed)::

    python benchmarks/runtime_bench.py --attention --workdir /tmp/rt_bench

first checks that each implementation's packed logits equal every document run alone
(flash_attention_2 through the flattened varlen inputs, flex_attention through the document
BlockMask, SDPA through the dense mask; bf16), then times forward + backward of a Llama
(``--hidden``, ``--layers``) at ``--attention-seq-lens`` (2048, 8192) for each: tokens/s,
MFU against the GPU's bf16 peak and peak memory. An implementation that is not installed
(flash-attn) is reported as not measured.

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

from runtime.attention import packed_model_inputs  # noqa: E402
from runtime.config import GenerateConfig, LoaderConfig, OptimConfig, TrainConfig  # noqa: E402
from runtime.data import PackedManifest  # noqa: E402
from runtime.generate import generation_config  # noqa: E402
from runtime.model import load_for_inference  # noqa: E402
from runtime.train import PEAK_BF16_TFLOPS, flops_per_token, train  # noqa: E402

ATTENTION_IMPLEMENTATIONS = ("flash_attention_2", "flex_attention", "sdpa")


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


def synthetic_packed(rows: int, seq_len: int, vocab: int, generator: torch.Generator) -> tuple[list, dict]:
    """Rows of documents (lengths ~ 1/8..1/2 of the row; a padded tail), shaped like a loader batch."""
    docs, ids, seg, pos = [], [], [], []
    for _ in range(rows):
        lengths, left = [], seq_len
        while left > seq_len // 8:
            n = int(torch.randint(seq_len // 8, seq_len // 2 + 1, (), generator=generator))
            lengths.append(min(n, left - 1))
            left -= lengths[-1]
        row = [torch.randint(1, vocab, (n,), generator=generator) for n in lengths]
        docs.append(row)
        pad = seq_len - sum(lengths)
        ids.append(torch.cat(row + [torch.zeros(pad, dtype=torch.long)]))
        seg.append(torch.cat([torch.full((n,), i + 1) for i, n in enumerate(lengths)] + [torch.zeros(pad, dtype=torch.long)]))
        pos.append(torch.cat([torch.arange(n) for n in lengths] + [torch.zeros(pad, dtype=torch.long)]))
    return docs, {"input_ids": torch.stack(ids), "segment_ids": torch.stack(seg), "position_ids": torch.stack(pos)}


def _llama(args, seq_len: int, impl: str):
    from transformers import AutoModelForCausalLM

    config = LlamaConfig(vocab_size=args.attention_vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                         max_position_embeddings=seq_len)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=impl, dtype=torch.bfloat16).cuda()


def _available(impl: str) -> str | None:
    if impl == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        return "flash-attn not installed"
    return None


def bench_attention(args) -> list[dict]:
    """Packed == per-document check, then throughput per implementation and row length (CUDA, bf16)."""
    rows_out = []
    peak = next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS if key in torch.cuda.get_device_name()), None)
    for impl in ATTENTION_IMPLEMENTATIONS:
        missing = _available(impl)
        if missing:
            rows_out.append({"measure": "attention", "impl": impl, "note": f"not measured: {missing}"})
            continue
        model = _llama(args, 1024, impl).eval()
        docs, batch = synthetic_packed(4, 1024, args.attention_vocab, torch.Generator().manual_seed(0))
        batch = {k: v.cuda() for k, v in batch.items()}
        with torch.no_grad():
            packed = model(**packed_model_inputs(batch, impl, torch.bfloat16)).logits.reshape(4, 1024, -1).float()
            worst = 0.0
            for r, row in enumerate(docs):
                start = 0
                for doc in row:
                    alone = model(input_ids=doc[None].cuda()).logits[0].float()
                    worst = max(worst, float((packed[r, start:start + len(doc)] - alone).abs().max()))
                    start += len(doc)
        rows_out.append({"measure": "packed_vs_alone", "impl": impl, "max_abs_logit_diff_bf16": worst,
                         "ok": worst < 0.1})
        del model
        for seq_len in args.attention_seq_lens:
            model = _llama(args, seq_len, impl).train()
            rows = max(1, args.attention_tokens // seq_len)
            _, batch = synthetic_packed(rows, seq_len, args.attention_vocab, torch.Generator().manual_seed(1))
            batch = {k: v.cuda() for k, v in batch.items()}
            fpt = flops_per_token(model, seq_len)
            torch.cuda.reset_peak_memory_stats()
            times = []
            for step in range(args.attention_steps + 1):
                torch.cuda.synchronize()
                start = time.perf_counter()
                logits = model(**packed_model_inputs(batch, impl, torch.bfloat16)).logits
                logits.float().logsumexp(-1).mean().backward()
                torch.cuda.synchronize()
                if step:  # the first step compiles (flex) and warms up
                    times.append(time.perf_counter() - start)
                model.zero_grad(set_to_none=True)
            tps = rows * seq_len / (sum(times) / len(times))
            rows_out.append({"measure": "attention", "impl": impl, "seq_len": seq_len, "rows": rows, "dtype": "bf16",
                             "tokens_per_s": tps, "mfu": tps * fpt / peak if peak else None,
                             "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30})
            del model, logits
            torch.cuda.empty_cache()
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", help="packed shards (training and decoding benchmarks)")
    parser.add_argument("--attention", action="store_true", help="packed-attention check and comparison (CUDA)")
    parser.add_argument("--attention-seq-lens", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--attention-tokens", type=int, default=32768, help="tokens per step (rows = this / seq_len)")
    parser.add_argument("--attention-steps", type=int, default=10)
    parser.add_argument("--attention-vocab", type=int, default=32000)
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
    if args.attention:
        if not torch.cuda.is_available():
            parser.error("--attention needs CUDA (flash-attn and the flex kernels are GPU kernels)")
        results = bench_attention(args)
        for row in results:
            print(json.dumps(row), flush=True)
        print("\n| attention | seq_len | tokens/s | MFU | peak GiB |\n|---|---|---|---|---|")
        for row in (r for r in results if r["measure"] == "attention"):
            if "note" in row:
                print(f"| {row['impl']} | | {row['note']} | | |")
            else:
                mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] else "n/a"
                print(f"| {row['impl']} | {row['seq_len']} | {row['tokens_per_s']:,.0f} | {mfu} "
                      f"| {row['peak_memory_gib']:.1f} |")
        if not all(r["ok"] for r in results if r["measure"] == "packed_vs_alone"):
            raise SystemExit("packed logits differ from the documents run alone")
        return
    if not args.manifest:
        parser.error("--manifest is required (except with --attention)")
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
