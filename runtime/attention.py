"""Document masking for packed rows.

A packed row holds several documents; attention must never cross from one to another and
positions restart at 0 for each. Three paths, all through the model's own attention code:

* flash implementations (``flash_attention_2/3``, hub kernels; transformers' rule: "flash" in
  the name): the batch is flattened to one row of ``B*L`` tokens, as
  ``DataCollatorWithFlattening`` does, with ``position_ids`` restarting at 0 for every
  sequence and explicit ``cu_seq_lens``. transformers runs the variable-length kernel only
  for a batch of one (``_is_packed_sequence``), so an unflattened ``(B, L)`` batch would get
  dense causal attention across document boundaries. A row's padding becomes a sequence of
  its own, never part of a document.
* ``flex_attention``: a ``BlockMask`` from the segment ids (block-sparse, no ``(B, 1, L, L)``
  tensor kept; fully masked blocks are skipped).
* every other implementation (``sdpa``, ``eager``, ...): an explicit 4-D block-diagonal
  causal mask built from the segment ids, which transformers passes through unchanged.

Encoders (``encoder_model_inputs``) get the same block-diagonal mask without the causal
triangle: attention is bidirectional within a document and never crosses documents.
"""

from __future__ import annotations

import torch
from transformers.utils.generic import is_flash_attention_requested

FLEX = "flex_attention"


def uses_varlen(attn_implementation: str) -> bool:
    """Whether transformers treats the implementation as flash (unpadded, variable-length) attention."""
    return is_flash_attention_requested(requested_attention_implementation=attn_implementation)


def _allowed(seg_q: torch.Tensor, seg_k: torch.Tensor, q: torch.Tensor, k: torch.Tensor, causal: bool,
             window: int | None) -> torch.Tensor:
    """Token ``q`` (segment ``seg_q``) may see token ``k``: same document (and ``k <= q``), or itself.

    Padding (segment 0) sees only itself, so no softmax row is empty (an empty row is NaN in SDPA).
    All arguments broadcast: index grids for the dense mask, scalars inside flex's ``mask_mod``.
    """
    allowed = (seg_q == seg_k) & (seg_q > 0)
    if causal:
        allowed = allowed & (k <= q)
    if window is not None:
        allowed = allowed & ((k - q).abs() <= window)
    return allowed | (q == k)


def packed_attention_mask(segment_ids: torch.Tensor, dtype: torch.dtype | None = None, causal: bool = True,
                          window: int | None = None) -> torch.Tensor:
    """``(batch, 1, L, L)`` mask: token i sees token j iff same document and j <= i.

    ``causal=False`` drops ``j <= i`` (encoders); ``window`` keeps only ``|i - j| <= window``
    (transformers' bidirectional sliding window, e.g. ModernBERT's local layers).
    Boolean (True = attend) when ``dtype`` is None, which SDPA accepts under any autocast
    dtype; otherwise additive in ``dtype`` (0 / finfo.min) for eager attention.
    """
    index = torch.arange(segment_ids.shape[-1], device=segment_ids.device)
    allowed = _allowed(segment_ids[:, :, None], segment_ids[:, None, :], index[:, None], index[None, :],
                       causal, window)[:, None]
    if dtype is None:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)


def packed_block_mask(segment_ids: torch.Tensor, causal: bool = True):
    """flex_attention's ``BlockMask`` for the same rule as ``packed_attention_mask``.

    Built with ``torch.compile`` on CUDA (evaluated block by block, never the full ``L x L``);
    elsewhere eagerly, which materialises the mask once while building it.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    batch, length = segment_ids.shape

    def mask_mod(b, h, q, k):
        return _allowed(segment_ids[b, q], segment_ids[b, k], q, k, causal, None)

    return create_block_mask(mask_mod, batch, None, length, length, device=segment_ids.device,
                             _compile=segment_ids.device.type == "cuda")


def flatten_packed(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | int]:
    """``(B, L)`` -> one ``(1, B*L)`` row for variable-length attention, with ``cu_seq_lens``.

    A sequence starts at every row start and wherever the segment id changes, so documents
    never span rows and a row's padding run is one sequence of its own. Positions are the
    shard's (restarting at 0 per document), padding counting from 0 within its run, so the
    position ids alone give transformers the same boundaries (``_is_packed_sequence`` /
    ``prepare_fa_kwargs_from_position_ids``).
    """
    segments, positions = batch["segment_ids"], batch["position_ids"]
    rows, length = segments.shape
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    index = torch.arange(length, device=segments.device).expand(rows, length)
    run_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    positions = torch.where(segments == 0, index - run_start, positions)
    cu = torch.cat([starts.flatten().nonzero().flatten(),
                    torch.tensor([rows * length], device=segments.device)]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    return {"input_ids": batch["input_ids"].reshape(1, -1), "position_ids": positions.reshape(1, -1),
            "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def packed_model_inputs(batch: dict[str, torch.Tensor], attn_implementation: str,
                        dtype: torch.dtype) -> dict:
    """Keyword arguments for ``model(**inputs)`` on a packed batch (without labels).

    Flash implementations get the flattened ``(1, B*L)`` batch: reshape the logits back to
    ``(B, L, vocab)`` (``runtime.train`` does).
    """
    if uses_varlen(attn_implementation):
        return flatten_packed(batch)
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
    if attn_implementation == FLEX:
        inputs["attention_mask"] = packed_block_mask(batch["segment_ids"])
    else:
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
