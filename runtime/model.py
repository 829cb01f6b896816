"""Building, loading, placing and quantizing ``transformers`` models (causal LMs; encoders for MLM).

Everything goes through ``transformers``' Auto classes so any causal-LM architecture works;
device maps come from accelerate's planner, 4/8-bit loading from bitsandbytes (CUDA only),
and the CPU int8 path from ``torch.ao.quantization.quantize_dynamic``.
"""

from __future__ import annotations

import glob
import importlib.util
import os

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel,
                          PreTrainedTokenizerFast)
from tokenizers import Tokenizer, processors

from pipelines.io import uri
from runtime.config import GenerateConfig
from runtime.data.shards import PackedManifest

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(manifest: PackedManifest, model_input_names: list[str] | None = None) -> PreTrainedTokenizerFast:
    """The pack job's ``tokenizer.json`` with its EOS/pad/BOS ids named, ready to save beside a model.

    Encoder manifests also name [MASK], [CLS], [SEP] (and WordPiece's unknown token), and the
    tokenizer frames text as the pack job framed documents, ``[CLS] a [SEP]`` (pairs:
    ``[CLS] a [SEP] b [SEP]``, token types 0/1), so pipelines see what training saw.
    """
    raw = Tokenizer.from_str(uri.read_bytes(manifest.tokenizer_path).decode("utf-8"))
    specials = {"eos_token": raw.id_to_token(manifest.eos_id), "pad_token": raw.id_to_token(manifest.pad_id)}
    if manifest.bos_id is not None:
        specials["bos_token"] = raw.id_to_token(manifest.bos_id)
    if manifest.mask_id is not None:
        cls, sep = raw.id_to_token(manifest.cls_id), raw.id_to_token(manifest.sep_id)
        specials.update(mask_token=raw.id_to_token(manifest.mask_id), cls_token=cls, sep_token=sep)
        unk = getattr(raw.model, "unk_token", None)
        if unk is not None and raw.token_to_id(unk) is not None:
            specials["unk_token"] = unk
        raw.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, manifest.cls_id), (sep, manifest.sep_id)])
        specials["model_max_length"] = manifest.seq_len  # the longest input training saw; pipelines truncate to it
    if model_input_names is not None:  # saved with the tokenizer, so pipelines feed exactly these
        specials["model_input_names"] = model_input_names
    return PreTrainedTokenizerFast(tokenizer_object=raw, **specials)


def pick_attn_implementation(requested: str | None, device: torch.device) -> str:
    """On CUDA flash_attention_2 (variable-length) when flash-attn is installed, else flex_attention
    (block-sparse document mask); SDPA with the dense mask elsewhere (flex on CPU compiles slowly)."""
    if requested:
        return requested
    if device.type == "cuda":
        return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "flex_attention"
    return "sdpa"


def _has_weights(path: str) -> bool:
    return os.path.isdir(path) and bool(glob.glob(os.path.join(path, "*.safetensors"))
                                        or glob.glob(os.path.join(path, "pytorch_model*.bin")))


def build_model(model_config: str, manifest: PackedManifest, attn_implementation: str,
                auto_class=AutoModelForCausalLM, config_overrides: dict | None = None) -> PreTrainedModel:
    """A float32 model for training: weights from a local directory, or fresh from a config.

    A fresh model gets the manifest's vocabulary size and ``config_overrides`` (set before the
    weights are created, e.g. an encoder's ``pad_token_id``); loaded weights must cover the
    vocabulary.
    """
    if _has_weights(model_config):
        model = auto_class.from_pretrained(model_config, dtype=torch.float32,
                                           attn_implementation=attn_implementation)
        if model.get_input_embeddings().num_embeddings < manifest.vocab_size:
            raise ValueError(f"model {model_config!r} has {model.get_input_embeddings().num_embeddings} "
                             f"embeddings, the shards use {manifest.vocab_size} token ids")
    else:
        config = AutoConfig.from_pretrained(model_config)
        config.vocab_size = manifest.vocab_size
        for key, value in (config_overrides or {}).items():
            setattr(config, key, value)
        model = auto_class.from_config(config, dtype=torch.float32, attn_implementation=attn_implementation)
    for target in (model.config, getattr(model, "generation_config", None)):
        if target is not None:  # encoders have no generation config
            target.eos_token_id, target.pad_token_id, target.bos_token_id = (
                manifest.eos_id, manifest.pad_id, manifest.bos_id)
    return model


def parse_max_memory(text: str | None) -> dict[int | str, str] | None:
    """``"0=20GiB,cpu=64GiB"`` -> ``{0: "20GiB", "cpu": "64GiB"}``."""
    if not text:
        return None
    out: dict[int | str, str] = {}
    for item in text.split(","):
        device, _, size = item.partition("=")
        device, size = device.strip(), size.strip()
        if not size:
            raise ValueError(f"--max-memory entry {item!r} is not DEVICE=SIZE")
        out[int(device) if device.isdigit() else device] = size
    return out


def plan_device_map(checkpoint: str, strategy: str, max_memory: dict[int | str, str] | None,
                    dtype: torch.dtype) -> dict[str, int | str]:
    """accelerate's placement of the checkpoint's modules for ``auto|balanced|sequential``.

    ``auto`` and ``balanced`` spread layers evenly over the GPUs (``get_balanced_memory``);
    ``sequential`` fills GPU 0 first. Whatever does not fit goes to ``cpu``, then ``disk``.
    """
    from accelerate import infer_auto_device_map, init_empty_weights
    from accelerate.utils import get_balanced_memory, get_max_memory

    config = AutoConfig.from_pretrained(checkpoint)
    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config, dtype=dtype)
    empty.tie_weights()
    no_split = list(getattr(empty, "_no_split_modules", None) or [])
    budget = get_max_memory(max_memory)
    if strategy in ("auto", "balanced"):
        budget = get_balanced_memory(empty, max_memory=budget, no_split_module_classes=no_split,
                                     dtype=dtype, low_zero=False)
    return infer_auto_device_map(empty, max_memory=budget, no_split_module_classes=no_split, dtype=dtype)


def _require_bitsandbytes(flag: str) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(f"{flag} needs a CUDA GPU (bitsandbytes kernels); none is visible. "
                           "On CPU use --cpu-int8 (dynamic int8 Linear layers) instead.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(f"{flag} needs bitsandbytes: pip install 'bitsandbytes>=0.43'")


def resolve_dtype(name: str, cuda: bool) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if cuda else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"--dtype must be auto or one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def quantize_cpu_int8(model: PreTrainedModel) -> PreTrainedModel:
    """Dynamic int8 quantization of every Linear layer (weights int8, activations quantized per batch)."""
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load_for_inference(cfg: GenerateConfig) -> PreTrainedModel:
    """Load a checkpoint with the precision, quantization and placement ``cfg`` asks for."""
    if cfg.cpu_int8:
        if cfg.device_map:
            raise ValueError("--cpu-int8 keeps the whole model on the CPU; drop --device-map")
        model = AutoModelForCausalLM.from_pretrained(cfg.checkpoint, dtype=torch.float32).eval()
        return quantize_cpu_int8(model)
    cuda = torch.cuda.is_available()
    dtype = resolve_dtype(cfg.dtype, cuda)
    kwargs: dict = {"dtype": dtype}
    bnb = cfg.load_in_8bit or cfg.load_in_4bit
    if bnb:
        _require_bitsandbytes("--load-in-8bit" if cfg.load_in_8bit else "--load-in-4bit")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=cfg.load_in_8bit, load_in_4bit=cfg.load_in_4bit,
            bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    if cfg.device_map:
        plan_dtype = torch.int8 if bnb else dtype  # bitsandbytes weights take ~1 byte (8-bit) or less
        kwargs["device_map"] = plan_device_map(cfg.checkpoint, cfg.device_map,
                                               parse_max_memory(cfg.max_memory), plan_dtype)
    elif bnb:
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(cfg.checkpoint, **kwargs).eval()
    if cuda and "device_map" not in kwargs:
        model = model.to("cuda")
    return model
