"""Command line of ``jobs/pack.py``, generated from the ``PackConfig``/``TokenizerConfig`` dataclasses.

Every option's default is read from ``pipelines.config`` (the one place defaults live); only
help texts and the few renamed flags are written here.
"""

from __future__ import annotations

import argparse
import dataclasses
from enum import Enum

from pipelines.cli import JobParser, add_input_arguments, add_spark_arguments
from pipelines.logs import add_logging_arguments
from pipelines.config import (FEATURE_SCHEMES, TOKENIZER_MODELS, InputConfig, PackConfig, PackingMethod, SparkConfig,
                              TokenizerConfig)

HELP = {
    "seq_len": "tokens per packed row",
    "overwrite": "replace an existing output directory",
    "packing": "best-fit (best-fit decreasing) or greedy (next-fit: pad when the next piece does not fit)",
    "formats": "comma-separated output formats: parquet and tfrecord (packed rows), megatron (the documents "
               "unpacked, Megatron-LM/NeMo .bin/.idx per shard)",
    "feature_names": "column names of the packed rows: default (input_ids, segment_ids, positions), seqio "
                     "(targets, targets_segment_ids, targets_positions) or maxtext (inputs/targets with "
                     "*_segmentation, *_position; targets shifted by one)",
    "source_column": "column whose values count as sources in the manifest's per-source token counts (default: "
                     "the input file; for a dedup output, the corpus it read)",
    "target_shard_bytes": "target uncompressed payload per shard, bytes (suffixes k, M, G allowed)",
    "num_shards": "write exactly this many shards instead of sizing them by --target-shard-bytes",
    "max_doc_tokens": "cap per document (content beyond it is dropped and counted; EOS is kept)",
    "shuffle_rows": "permute rows within each shard (seeded; output stays deterministic)",
    "seed": "seed of the row permutation",
    "parquet_compression": "Parquet codec (zstd, snappy, gzip, none)",
    "parquet_row_group_rows": "rows per Parquet row group",
    "path": "local tokenizer.json to use",
    "train": "train a tokenizer (--tokenizer-model) on the corpus and store it with the output",
    "model": "what --train-tokenizer trains: byte-bpe (lossless, GPT-2 style) or wordpiece (BERT style)",
    "vocab_size": "vocabulary size when training (special tokens included)",
    "min_frequency": "minimum pair frequency for a BPE merge when training",
    "train_sample_bytes": "at most this much text (chosen by text hash) trains the tokenizer",
    "eos_token": "token appended to every document",
    "bos_token": "token prepended to every document (default: none)",
    "pad_token": "padding token (falls back to EOS if the tokenizer lacks it)",
    "mask_token": "encoder tokenizer: the [MASK] token (with --bos-token '[CLS]' --eos-token '[SEP]'); "
                  "the manifest records mask_id, cls_id, sep_id",
    "unk_token": "WordPiece's unknown token",
}
FLAGS = {("tokenizer", "path"): "--tokenizer", ("tokenizer", "train"): "--train-tokenizer",
         ("tokenizer", "model"): "--tokenizer-model"}
CHOICES = {"packing": [m.value for m in PackingMethod], "model": TOKENIZER_MODELS, "feature_names": FEATURE_SCHEMES}
SIZE_SUFFIX = {"k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("b")
    factor = SIZE_SUFFIX.get(text[-1:], 1)
    return int(float(text[:-1] if factor != 1 else text) * factor)


def _formats(text: str) -> tuple[str, ...]:
    return tuple(f.strip() for f in text.split(",") if f.strip())


def _add_fields(parser: argparse.ArgumentParser, cls, group: str, skip: set[str]) -> None:
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = default.value if isinstance(default, Enum) else default
        flag = FLAGS.get((group, f.name), "--" + f.name.replace("_", "-"))
        dest = f"{group}__{f.name}"
        help_text = HELP.get(f.name, "")
        kind = str(f.type)
        if kind == "bool":
            if default:
                parser.add_argument("--no-" + flag[2:], dest=dest, action="store_false",
                                    help=f"do not {help_text}" if help_text else None)
            else:
                parser.add_argument(flag, dest=dest, action="store_true", help=help_text)
            parser.set_defaults(**{dest: default})
            continue
        if f.name == "target_shard_bytes":
            convert = parse_size
        elif kind.startswith("tuple"):
            convert = _formats
        elif kind.startswith("int"):
            convert = int
        else:
            convert = str
        shown = ",".join(default) if isinstance(default, tuple) else default
        extra = {"choices": CHOICES[f.name]} if f.name in CHOICES else {}
        parser.add_argument(flag, dest=dest, type=convert, default=default, metavar=f.name.upper(),
                            help=help_text if default is None else f"{help_text} (default: {shown})", **extra)


def pack_parser() -> argparse.ArgumentParser:
    p = JobParser(
        prog="jobs/pack.py",
        description="Tokenize a corpus and pack it into fixed-length rows: Parquet and TFRecord shards, "
                    "tokenizer.json and manifest.json, published atomically.")
    add_input_arguments(p, id_column=False,
                        input_help="corpus (Parquet/JSON Lines/HF save_to_disk) or a dedup output directory")
    p.add_argument("--output", required=True, help="output directory (must not exist unless --overwrite)")
    _add_fields(p, PackConfig, "pack", skip={"input", "output", "tokenizer", "spark"})
    _add_fields(p.add_argument_group("tokenizer"), TokenizerConfig, "tokenizer", skip=set())
    add_spark_arguments(p.add_argument_group("spark"))
    add_logging_arguments(p)
    return p


def pack_config(args: argparse.Namespace) -> PackConfig:
    values = vars(args)
    pack = {k.split("__", 1)[1]: v for k, v in values.items() if k.startswith("pack__")}
    tok = {k.split("__", 1)[1]: v for k, v in values.items() if k.startswith("tokenizer__")}
    return PackConfig(
        input=InputConfig(path=args.input, text_column=args.text_column, input_format=args.input_format),
        output=args.output,
        tokenizer=TokenizerConfig(**tok),
        spark=SparkConfig(master=args.master, shuffle_partitions=args.shuffle_partitions,
                          driver_memory=args.driver_memory, app_name="corpus-prep-pack"),
        **pack)
