"""Document masking for packed rows.

A packed row holds several documents; attention must never cross from one to another and
positions restart at 0 for each. Two paths, both through the model's own attention code:

* ``flash_attention_2`` / ``flash_attention_3`` (CUDA with flash-attn installed): no mask is
  passed; transformers sees ``position_ids`` restarting at 0 and runs the variable-length
  kernel with one sequence per document (``_is_packed_sequence`` in transformers).
* every other implementation (``sdpa``, ``eager``, ...): an explicit 4-D block-diagonal
  causal mask built from the segment ids, which transformers passes through unchanged.

Encoders (``encoder_model_inputs``) get the same block-diagonal mask without the causal
triangle: attention is bidirectional within a document and never crosses documents.
"""

from __future__ import annotations

import torch

VARLEN_IMPLEMENTATIONS = frozenset({"flash_attention_2", "flash_attention_3"})


def packed_attention_mask(segment_ids: torch.Tensor, dtype: torch.dtype | None = None, causal: bool = True,
                          window: int | None = None) -> torch.Tensor:
    """``(batch, 1, L, L)`` mask: token i sees token j iff same document and j <= i.

    ``causal=False`` drops ``j <= i`` (encoders); ``window`` keeps only ``|i - j| <= window``
    (transformers' bidirectional sliding window, e.g. ModernBERT's local layers).
    Padding (segment 0) sees only itself, so no softmax row is empty (an empty row is NaN
    in SDPA). Boolean (True = attend) when ``dtype`` is None, which SDPA accepts under any
    autocast dtype; otherwise additive in ``dtype`` (0 / finfo.min) for eager attention.
    """
    length = segment_ids.shape[-1]
    allowed = segment_ids[:, :, None] == segment_ids[:, None, :]
    allowed &= (segment_ids > 0)[:, :, None]
    index = torch.arange(length, device=segment_ids.device)
    if causal:
        allowed &= index[None, :] <= index[:, None]
    if window is not None:
        allowed &= (index[None, :] - index[:, None]).abs() <= window
    allowed = (allowed | torch.eye(length, dtype=torch.bool, device=segment_ids.device))[:, None]
    if dtype is None:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)


def packed_model_inputs(batch: dict[str, torch.Tensor], attn_implementation: str,
                        dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Keyword arguments for ``model(**inputs)`` on a packed batch (without labels)."""
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
    if attn_implementation not in VARLEN_IMPLEMENTATIONS:
        mask_dtype = dtype if attn_implementation == "eager" else None
        inputs["attention_mask"] = packed_attention_mask(batch["segment_ids"], mask_dtype)
    return inputs


def encoder_model_inputs(batch: dict[str, torch.Tensor], config, dtype: torch.dtype,
                         position_offset: int = 0) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
    """Keyword arguments for an encoder on a packed batch: bidirectional block-diagonal mask.

    Models with sliding-window layers (``config.layer_types``, e.g. ModernBERT) get one mask
    per layer type, the local one also limited to ``config.sliding_window``. Positions restart
    per document, shifted by ``position_offset`` (RoBERTa numbers positions from
    ``padding_idx + 1``). ``token_type_ids`` are left to the model's default (zeros).
    """
    mask_dtype = dtype if config._attn_implementation == "eager" else None
    segments = batch["segment_ids"]
    mask = packed_attention_mask(segments, mask_dtype, causal=False)
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        mask = {"full_attention": mask, "sliding_attention": packed_attention_mask(
            segments, mask_dtype, causal=False, window=config.sliding_window)}
    return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"] + position_offset,
            "attention_mask": mask}
