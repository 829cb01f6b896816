"""Document masking for packed rows.

A packed row holds several documents; attention must never cross from one to another and
positions restart at 0 for each. Two paths, both through the model's own attention code:

* ``flash_attention_2`` / ``flash_attention_3`` (CUDA with flash-attn installed): no mask is
  passed; transformers sees ``position_ids`` restarting at 0 and runs the variable-length
  kernel with one sequence per document (``_is_packed_sequence`` in transformers).
* every other implementation (``sdpa``, ``eager``, ...): an explicit 4-D block-diagonal
  causal mask built from the segment ids, which transformers passes through unchanged.
"""

from __future__ import annotations

import torch

VARLEN_IMPLEMENTATIONS = frozenset({"flash_attention_2", "flash_attention_3"})


def packed_attention_mask(segment_ids: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``(batch, 1, L, L)`` mask: token i sees token j iff same document and j <= i.

    Padding (segment 0) sees only itself, so no softmax row is empty (an empty row is NaN
    in SDPA). Boolean (True = attend) when ``dtype`` is None, which SDPA accepts under any
    autocast dtype; otherwise additive in ``dtype`` (0 / finfo.min) for eager attention.
    """
    length = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    real = (segment_ids > 0)[:, :, None]
    eye = torch.eye(length, dtype=torch.bool, device=segment_ids.device)
    allowed = ((same & causal & real) | eye)[:, None]
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
