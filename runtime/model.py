"""Building, loading, placing and quantizing ``transformers`` models (causal LMs; encoders for MLM).

Everything goes through ``transformers``' Auto classes so any causal-LM architecture works;
device maps from ``from_pretrained(device_map=..., max_memory=...)`` (accelerate underneath),
4/8-bit loading from bitsandbytes (CUDA only), and the CPU int8 path from torchao.
"""

from __future__ import annotations

import importlib.util

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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``--device``: auto is CUDA when visible, else CPU; xla is PyTorch/XLA's device (TPU, or PJRT_DEVICE=CPU)."""
    if name == "xla":
        if importlib.util.find_spec("torch_xla") is None:
            raise ValueError("--device xla needs torch-xla in this environment: scripts/setup.sh --xla "
                             "(a separate .venv-xla; torch-xla pins its own torch)")
        import torch_xla

        return torch_xla.device()
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def pick_attn_implementation(requested: str | None, device: torch.device) -> str:
    """On CUDA flash_attention_2 (variable-length) when flash-attn is installed, else flex_attention
    (block-sparse document mask); SDPA with the dense mask elsewhere (flex on CPU compiles slowly)."""
    if requested:
        return requested
    if device.type == "cuda":
        return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "flex_attention"
    return "sdpa"


def _has_weights(path: str) -> bool:
    return any(uri.listdir(path, pattern) for pattern in ("*.safetensors", "pytorch_model*.bin"))


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
    """Dynamic int8 quantization of every Linear layer (int8 weights, activations quantized per token) by
    torchao, which replaces torch's deprecated ``torch.ao.quantization.quantize_dynamic``."""
    if importlib.util.find_spec("torchao") is None:
        raise RuntimeError("--cpu-int8 needs torchao: pip install 'torchao>=0.12' (in the runtime extra)")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


def load_for_inference(cfg: GenerateConfig) -> PreTrainedModel:
    """Load a checkpoint with the precision, quantization and placement ``cfg`` asks for."""
    if cfg.cpu_int8:
        if cfg.device_map:
            raise ValueError("--cpu-int8 keeps the whole model on the CPU; drop --device-map")
        model = AutoModelForCausalLM.from_pretrained(cfg.checkpoint, dtype=torch.float32).eval()
        return quantize_cpu_int8(model)
    device = resolve_device(cfg.device)
    if device.type == "xla":
        model = AutoModelForCausalLM.from_pretrained(cfg.checkpoint, dtype=resolve_dtype(cfg.dtype, False))
        return model.to(device).eval()
    cuda = device.type == "cuda"
    dtype = resolve_dtype(cfg.dtype, cuda)
    kwargs: dict = {"dtype": dtype}
    bnb = cfg.load_in_8bit or cfg.load_in_4bit
    if bnb:
        _require_bitsandbytes("--load-in-8bit" if cfg.load_in_8bit else "--load-in-4bit")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=cfg.load_in_8bit, load_in_4bit=cfg.load_in_4bit,
            bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    if cfg.device_map:  # transformers plans it (accelerate), knowing the quantized weight sizes
        kwargs.update(device_map=cfg.device_map, max_memory=parse_max_memory(cfg.max_memory),
                      offload_folder=cfg.offload_folder)
    elif bnb:
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(cfg.checkpoint, **kwargs).eval()
    if cuda and "device_map" not in kwargs:
        model = model.to("cuda")
    return model
