"""Training objectives on the same packed batches: next-token prediction and masked-LM pretraining.

An objective names the Auto class that builds the model, turns a loader batch into model
inputs (masking, attention mask, positions) and says which logits are scored against which
labels. The training loop (``runtime.train``) is the same for both, so resume, checkpoints,
DDP and logging behave identically.

Masked LM (``--objective mlm``): each document of a packed row is ``[CLS] text [SEP]`` (the
pack job's BOS/EOS with ``--mask-token``). Masking is transformers' own
``DataCollatorForLanguageModeling.torch_mask_tokens``, given the special-token mask (padding
and every named special token: never selected), and drawn from torch's global generator in
the main process, so the trainer's saved RNG state makes a resumed run mask exactly as an
uninterrupted one.
"""

from __future__ import annotations

import inspect

import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, DataCollatorForLanguageModeling

from runtime.attention import FLEX, encoder_model_inputs, packed_model_inputs, uses_varlen
from runtime.config import MaskingConfig
from runtime.data import PackedManifest
from runtime.model import pick_attn_implementation


class CausalLM:
    """Next-token prediction: logit t is scored against the token at t + 1."""

    auto_class = AutoModelForCausalLM

    @staticmethod
    def attn_implementation(requested: str | None, device: torch.device) -> str:
        return pick_attn_implementation(requested, device)

    @staticmethod
    def config_overrides(manifest: PackedManifest) -> dict:
        return {}

    @staticmethod
    def model_input_names(model) -> list[str] | None:
        return None  # the tokenizer's default

    def __init__(self, model, tokenizer, manifest: PackedManifest, masking: MaskingConfig) -> None:
        self.attn = model.config._attn_implementation

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch

    def model_inputs(self, batch: dict[str, torch.Tensor], dtype: torch.dtype) -> dict:
        return packed_model_inputs(batch, self.attn, dtype)

    def targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["labels"][:, 1:]

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, :-1]  # (B, L, V): flash implementations' flattened logits are reshaped by the caller


def position_offset(model) -> int:
    """First position id of a sequence: RoBERTa-style embeddings count from ``padding_idx + 1``."""
    embeddings = getattr(model.base_model, "embeddings", None)
    if hasattr(embeddings, "create_position_ids_from_input_ids"):
        return embeddings.padding_idx + 1
    return 0


class MaskedLM:
    """BERT-style masked LM: the selected tokens are predicted in place, bidirectionally per document."""

    auto_class = AutoModelForMaskedLM

    @staticmethod
    def attn_implementation(requested: str | None, device: torch.device) -> str:
        """SDPA unless eager is asked for: the document mask is what keeps documents apart."""
        attn = requested or "sdpa"
        if uses_varlen(attn) or attn == FLEX:
            raise ValueError(f"--objective mlm runs with --attn-implementation sdpa or eager (the block-diagonal "
                             f"document mask); {attn}'s packed path is not verified for encoders")
        return attn

    @staticmethod
    def config_overrides(manifest: PackedManifest) -> dict:
        if manifest.mask_id is None:
            raise ValueError(f"manifest {manifest.root!r} has no mask_id: pack with --mask-token '[MASK]' "
                             "--bos-token '[CLS]' --eos-token '[SEP]' --pad-token '[PAD]' for --objective mlm")
        # the embeddings' padding_idx (and RoBERTa's position numbering) must be the shards' pad id
        return {"pad_token_id": manifest.pad_id}

    @staticmethod
    def model_input_names(model) -> list[str]:
        """What the saved tokenizer makes pipelines feed the checkpoint: token types (0/1 for text
        pairs) only where the model has two of them (BERT); RoBERTa has one, ModernBERT takes none."""
        types = ("token_type_ids" in inspect.signature(model.forward).parameters
                 and getattr(model.config, "type_vocab_size", 0) > 1)
        return ["input_ids", "token_type_ids", "attention_mask"] if types else ["input_ids", "attention_mask"]

    def __init__(self, model, tokenizer, manifest: PackedManifest, masking: MaskingConfig) -> None:
        self.config = model.config
        self.offset = position_offset(model)
        table = getattr(getattr(model.base_model, "embeddings", None), "position_embeddings", None)
        if isinstance(table, torch.nn.Embedding) and manifest.seq_len + self.offset > table.num_embeddings:
            raise ValueError(f"the model has {table.num_embeddings} position embeddings; rows of {manifest.seq_len} "
                             f"tokens need {manifest.seq_len + self.offset} (raise max_position_embeddings)")
        self.collator = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=masking.mlm_probability, mask_replace_prob=masking.mask_replace_prob,
            random_replace_prob=masking.random_replace_prob)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def special_tokens_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Never masked: padding and every special token (the collator's ``all_special_ids`` rule)."""
        return (batch["segment_ids"] == 0) | torch.isin(batch["input_ids"], self.special_ids)

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Corrupt the inputs; labels are the original ids at selected positions, -100 elsewhere."""
        inputs, labels = self.collator.torch_mask_tokens(batch["input_ids"].clone(),
                                                         special_tokens_mask=self.special_tokens_mask(batch))
        return {**batch, "input_ids": inputs, "labels": labels}

    def model_inputs(self, batch: dict[str, torch.Tensor], dtype: torch.dtype) -> dict:
        return encoder_model_inputs(batch, self.config, dtype, self.offset)

    def targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["labels"]

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits


OBJECTIVES = {"clm": CausalLM, "mlm": MaskedLM}
