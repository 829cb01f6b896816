"""Packed attention: a packed row's logits equal each document's logits run alone."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

from runtime.attention import packed_attention_mask, packed_model_inputs

VOCAB = 97
CONFIGS = {
    "llama": lambda: LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2),
    "qwen2": lambda: Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2),
    "gpt_neox": lambda: GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4),
    "gpt2": lambda: GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                               bos_token_id=0, eos_token_id=0),
}


def _packed_row(lengths: list[int], seq_len: int, generator: torch.Generator):
    docs = [torch.randint(1, VOCAB, (n,), generator=generator) for n in lengths]
    pad = seq_len - sum(lengths)
    ids = torch.cat(docs + [torch.zeros(pad, dtype=torch.long)])[None]
    seg = torch.cat([torch.full((n,), i + 1) for i, n in enumerate(lengths)] + [torch.zeros(pad, dtype=torch.long)])[None]
    pos = torch.cat([torch.arange(n) for n in lengths] + [torch.zeros(pad, dtype=torch.long)])[None]
    return docs, {"input_ids": ids, "segment_ids": seg, "position_ids": pos}


@pytest.mark.parametrize("arch", sorted(CONFIGS))
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_logits_equal_documents_alone(arch, impl):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[arch](), attn_implementation=impl).eval()
    docs, batch = _packed_row([5, 9, 1, 3], 24, torch.Generator().manual_seed(1))
    with torch.no_grad():
        packed = model(**packed_model_inputs(batch, impl, torch.float32)).logits[0]
        unmasked = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        start = 0
        for doc in docs:
            alone = model(input_ids=doc[None]).logits[0]
            torch.testing.assert_close(packed[start:start + len(doc)], alone, atol=1e-5, rtol=0)
            start += len(doc)
    # without the mask the second document would attend to the first: the check has teeth
    assert (unmasked[5:14] - packed[5:14]).abs().max() > 1e-3
    assert torch.isfinite(packed).all()  # padding rows are not empty softmax rows


def test_mask_is_block_diagonal_causal_and_padding_sees_only_itself():
    seg = torch.tensor([[1, 1, 2, 2, 2, 0]])
    allowed = packed_attention_mask(seg)[0, 0].int()
    assert allowed.tolist() == [[1, 0, 0, 0, 0, 0],
                                [1, 1, 0, 0, 0, 0],
                                [0, 0, 1, 0, 0, 0],
                                [0, 0, 1, 1, 0, 0],
                                [0, 0, 1, 1, 1, 0],
                                [0, 0, 0, 0, 0, 1]]
    additive = packed_attention_mask(seg, torch.float32)[0, 0]
    assert (additive[allowed.bool()] == 0).all() and (additive[~allowed.bool()] == torch.finfo(torch.float32).min).all()


def test_varlen_path_passes_no_mask():
    _, batch = _packed_row([3, 4], 8, torch.Generator().manual_seed(0))
    inputs = packed_model_inputs(batch, "flash_attention_2", torch.bfloat16)
    assert "attention_mask" not in inputs and torch.equal(inputs["position_ids"], batch["position_ids"])
