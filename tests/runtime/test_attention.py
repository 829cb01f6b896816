"""Packed attention: a packed row's logits equal each document's logits run alone, for the dense
mask (SDPA, eager), the flex_attention block mask, and the flattened variable-length inputs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

from transformers import AttentionInterface
from transformers.integrations import flex_attention as hf_flex
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask
from transformers.modeling_flash_attention_utils import _is_packed_sequence, prepare_fa_kwargs_from_position_ids

from runtime.attention import flatten_packed, packed_attention_mask, packed_model_inputs

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


def _packed_batch(rows: list[list[int]], seq_len: int, seed: int = 0):
    """Rows of documents with the given lengths (padding after them); the documents per row."""
    generator = torch.Generator().manual_seed(seed)
    parts = [_packed_row(lengths, seq_len, generator) for lengths in rows]
    batch = {k: torch.cat([p[1][k] for p in parts]) for k in parts[0][1]}
    return [p[0] for p in parts], batch


def test_varlen_inputs_are_flattened_and_recognised_by_transformers():
    _, batch = _packed_batch([[3, 4], [8], [2, 2, 1]], 8)
    # the bug this replaces: a (B, L) batch is not a packed sequence to transformers (dense causal attention)
    assert not _is_packed_sequence(batch["position_ids"], batch_size=3)
    inputs = packed_model_inputs(batch, "flash_attention_2", torch.bfloat16)
    assert inputs.keys() == flatten_packed(batch).keys() and "attention_mask" not in inputs
    assert inputs["input_ids"].shape == inputs["position_ids"].shape == (1, 24)
    assert torch.equal(inputs["input_ids"][0], batch["input_ids"].flatten())
    assert _is_packed_sequence(inputs["position_ids"], batch_size=1)
    (cu, _), (longest, _) = prepare_fa_kwargs_from_position_ids(inputs["position_ids"])
    assert torch.equal(cu, inputs["cu_seq_lens_q"]) and longest == inputs["max_length_q"] == 8
    # row 0: [3, 4, pad 1], row 1: [8], row 2: [2, 2, 1, pad 3]; each padding run is its own sequence
    assert cu.tolist() == [0, 3, 7, 8, 16, 18, 20, 21, 24]
    segments = batch["segment_ids"].flatten()
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        assert (a // 8) == ((b - 1) // 8) and segments[a:b].unique().numel() == 1  # one row, one document


def _varlen_reference(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """CPU stand-in for flash-attn's varlen kernel: causal SDPA per sequence of ``cu_seq_lens_q``."""
    assert query.shape[0] == 1 and attention_mask is None
    cu = kwargs["cu_seq_lens_q"].tolist()
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    out = torch.cat([torch.nn.functional.scaled_dot_product_attention(
        query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True, scale=scaling)
        for a, b in zip(cu[:-1], cu[1:])], dim=2)
    return out.transpose(1, 2).contiguous(), None



def assert_documents_alone(model, packed, rows):
    """Each document's packed logits equal the model (SDPA) run on that document alone, to 1e-5."""
    model.set_attn_implementation("sdpa")
    for row, docs in enumerate(rows):
        start = 0
        for doc in docs:
            alone = model(input_ids=doc[None]).logits[0]
            torch.testing.assert_close(packed[row, start:start + len(doc)], alone, atol=1e-5, rtol=0)
            start += len(doc)

@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_flattened_varlen_logits_equal_documents_alone(arch):
    """The flattened inputs reach the attention with their cu_seq_lens, and the model's logits are right."""
    name = "varlen_reference"  # a "flash" name would make transformers load flash-attn kernels
    AttentionInterface.register(name, _varlen_reference)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, flash_attention_mask)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[arch](), attn_implementation=name).eval()
    rows, batch = _packed_batch([[5, 9, 1, 3], [24], [7, 7]], 24, seed=1)
    with torch.no_grad():
        packed = model(**flatten_packed(batch)).logits.reshape(3, 24, -1)
        assert_documents_alone(model, packed, rows)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_flex_block_mask_logits_equal_documents_alone(arch, monkeypatch):
    """flex_attention with the document BlockMask; eager flex (transformers would torch.compile it,
    minutes on a small CPU), the same kernel semantics."""
    from torch.nn.attention.flex_attention import flex_attention

    monkeypatch.setattr(hf_flex, "compile_friendly_flex_attention",
                        lambda q, k, v, training=False, **kw: flex_attention(q, k, v, **kw))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[arch](), attn_implementation="flex_attention").eval()
    rows, batch = _packed_batch([[5, 9, 1, 3], [10, 14]], 24, seed=2)
    inputs = packed_model_inputs(batch, "flex_attention", torch.float32)
    assert type(inputs["attention_mask"]).__name__ == "BlockMask"
    with torch.no_grad():
        packed = model(**inputs).logits
        unmasked = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                         attention_mask=packed_model_inputs({**batch, "segment_ids": (batch["segment_ids"] > -1).long()},
                                                            "flex_attention", torch.float32)["attention_mask"]).logits
        assert_documents_alone(model, packed, rows)
    assert (unmasked[0, 5:14] - packed[0, 5:14]).abs().max() > 1e-3  # one document per row: the mask matters
    assert torch.isfinite(packed).all()
