"""Command line of ``jobs/pack.py``, generated from the ``PackConfig``/``TokenizerConfig`` dataclasses.

Every option's default and allowed values are read from ``pipelines.config`` (the one place
they live, ``pipelines.options`` turns fields into options); only help texts, the few renamed
flags and the parsers of sizes and lists are written here.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping

from pipelines.cli import JobParser, add_input_arguments, add_spark_arguments, input_config, spark_config
from pipelines.config import FEATURE_SCHEMES, PARQUET_CODECS, TOKENIZER_MODELS, PackConfig, TokenizerConfig
from pipelines.logs import add_logging_arguments
from pipelines.options import add_fields, build, comma_list

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
    "parquet_compression": f"Parquet codec ({', '.join(PARQUET_CODECS)})",
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
TOKENIZER_FLAGS = {"path": "--tokenizer", "train": "--train-tokenizer", "model": "--tokenizer-model"}
SIZE_SUFFIX = {"k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("b")
    factor = SIZE_SUFFIX.get(text[-1:], 1)
    return int(float(text[:-1] if factor != 1 else text) * factor)


def add_pack_arguments(pack: argparse.ArgumentParser, tokenizer: argparse.ArgumentParser,
                       skip: Collection[str] = (), flags: Mapping[str, str] | None = None) -> None:
    """The ``PackConfig`` settings on ``pack`` (but ``skip``, renamed by ``flags``), the ``TokenizerConfig`` ones on
    ``tokenizer`` (parsers or argument groups); :func:`pack_config` reads them back."""
    add_fields(pack, PackConfig, prefix="pack__", skip={"input", "output", "tokenizer", "spark", *skip}, flags=flags,
               helps=HELP, converters={"target_shard_bytes": parse_size, "formats": comma_list},
               choices={"feature_names": FEATURE_SCHEMES})
    add_fields(tokenizer, TokenizerConfig, prefix="tokenizer__", flags=TOKENIZER_FLAGS, helps=HELP,
               choices={"model": TOKENIZER_MODELS})


def pack_parser() -> argparse.ArgumentParser:
    p = JobParser(
        prog="jobs/pack.py",
        description="Tokenize a corpus and pack it into fixed-length rows: Parquet and TFRecord shards, "
                    "tokenizer.json and manifest.json, published atomically.")
    add_input_arguments(p, id_column=False,
                        input_help="corpus (Parquet/JSON Lines/HF save_to_disk) or a dedup output directory")
    p.add_argument("--output", required=True, help="output directory (must not exist unless --overwrite)")
    add_pack_arguments(p, p.add_argument_group("tokenizer"))
    add_spark_arguments(p.add_argument_group("spark"))
    add_logging_arguments(p)
    return p


def pack_config(args: argparse.Namespace) -> PackConfig:
    values = vars(args)
    return build(PackConfig, values, "pack__", input=input_config(args, id_column=False), output=args.output,
                 tokenizer=build(TokenizerConfig, values, "tokenizer__"),
                 spark=spark_config(args, "corpus-prep-pack"))
