"""The pack job's tokenizer: a local ``tokenizer.json``, or a byte-level BPE / WordPiece trained on the corpus.

Training sample: BPE training runs in one process, so it sees at most
``train_sample_bytes`` of text. Documents are chosen by Spark's ``xxhash64`` of the text
(``hash mod 2**20 < fraction * 2**20``, ``fraction = sample_bytes / corpus_bytes``) and streamed
to the driver one partition at a time in hash order, so the sample — and the trained
vocabulary — depend only on the corpus content, not on file order or partitioning.

Byte-level BPE (GPT-2 style): text is mapped to bytes first, so every string is encodable
and ``decode(encode(text)) == text``; no unknown token exists. WordPiece (BERT style, cased):
split on whitespace and punctuation, ``##`` continuation pieces, an unknown token for
characters outside the vocabulary; whitespace is not kept, so decoding is not exact. Special
tokens take the first ids: pad 0, EOS 1, BOS 2 (when configured), then MASK and UNK (when
configured / WordPiece).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.config import TokenizerConfig
from pipelines.errors import UserError
from pipelines.io import uri

HASH_BUCKETS = 1 << 20


class TokenizerError(UserError, ValueError):
    """The tokenizer file or its special tokens cannot serve this corpus."""


@dataclass(frozen=True)
class TokenizerInfo:
    json: str
    vocab_size: int
    eos_id: int
    pad_id: int
    bos_id: int | None
    notes: tuple[str, ...] = ()
    trained_on_bytes: int | None = None
    mask_id: int | None = None  # encoder tokenizers only

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.json.encode("utf-8")).hexdigest()


def _special_ids(tok, cfg: TokenizerConfig, source: str) -> tuple[int, int, int | None, int | None, list[str]]:
    """(eos, pad, bos, mask, notes); every configured special token must exist in the tokenizer."""
    notes = []
    known = sorted(t.content for t in tok.get_added_tokens_decoder().values())
    eos = tok.token_to_id(cfg.eos_token)
    if eos is None:
        raise TokenizerError(f"EOS token {cfg.eos_token!r} is not in {source}; its added tokens are "
                             f"{known[:20]} (choose one with --eos-token)")
    def optional_id(token: str | None, what: str) -> int | None:
        """The id of an optional special token, which must exist when it is asked for."""
        if token is None:
            return None
        found = tok.token_to_id(token)
        if found is None:
            raise TokenizerError(f"{what} token {token!r} is not in {source}; its added tokens are {known[:20]}")
        return found

    bos = optional_id(cfg.bos_token, "BOS")
    mask = optional_id(cfg.mask_token, "mask")
    pad = tok.token_to_id(cfg.pad_token)
    if pad is None and mask is not None:
        raise TokenizerError(f"pad token {cfg.pad_token!r} is not in {source}; an encoder tokenizer needs its "
                             f"own pad token (its added tokens are {known[:20]})")
    if pad is None:
        notes.append(f"pad token {cfg.pad_token!r} not in the tokenizer; padding uses EOS id {eos} "
                     "(padding is marked by segment_ids == 0 either way)")
        pad = eos
    return eos, pad, bos, mask, notes


def load_tokenizer_file(cfg: TokenizerConfig) -> TokenizerInfo:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(uri.read_bytes(cfg.path).decode("utf-8"))
    except FileNotFoundError as exc:
        raise TokenizerError(f"tokenizer file {cfg.path!r} does not exist") from exc
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise TokenizerError(f"{cfg.path!r} is not a tokenizers JSON file: {exc}") from exc
    eos, pad, bos, mask, notes = _special_ids(tok, cfg, repr(cfg.path))
    if tok.truncation or tok.padding:
        notes.append("the tokenizer file configures truncation/padding; both are disabled for packing")
    return TokenizerInfo(tok.to_str(), tok.get_vocab_size(with_added_tokens=True), eos, pad, bos,
                         tuple(notes), mask_id=mask)


def train_tokenizer(documents: DataFrame, text_column: str, cfg: TokenizerConfig) -> TokenizerInfo:
    """Train byte-level BPE or WordPiece on a deterministic, size-capped sample of ``documents``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    text = F.col(text_column)
    nonempty = documents.select(text.alias("text")).filter(F.col("text").isNotNull() & (F.length("text") > 0))
    total = nonempty.agg(F.sum(F.octet_length("text")).alias("b")).first()["b"] or 0
    if total == 0:
        raise TokenizerError("cannot train a tokenizer: the corpus has no non-empty text")
    fraction = min(1.0, cfg.train_sample_bytes / total)
    bucket = F.pmod(F.xxhash64("text"), F.lit(HASH_BUCKETS))
    sample = nonempty
    if fraction < 1.0:
        sample = sample.filter(bucket < F.lit(int(math.ceil(fraction * HASH_BUCKETS))))
    # A fixed order, by two hashes of the text: equal keys are equal texts. Sorting by the text
    # itself would put whole texts into the sort's range bounds, which ship in every task (1.4 MB
    # of them on the bundled blog sample, and a Spark warning).
    sample = sample.orderBy(F.xxhash64("text"), F.xxhash64(F.lit("order"), "text"))

    specials = cfg.special_tokens  # distinct: checked by PackConfig before Spark starts
    if cfg.model == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=cfg.unk_token))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)  # cased; control characters removed
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                            special_tokens=specials, show_progress=False)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                      special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    seen = [0]

    def texts():
        for row in sample.toLocalIterator(prefetchPartitions=True):
            seen[0] += len(row["text"].encode("utf-8"))
            yield row["text"]

    tok.train_from_iterator(texts(), trainer)
    eos, pad, bos, mask, notes = _special_ids(tok, cfg, "the trained tokenizer")
    vocab = tok.get_vocab_size(with_added_tokens=True)
    if vocab < cfg.vocab_size:
        notes.append(f"the corpus supports only {vocab} tokens of the {cfg.vocab_size} asked for")
    return TokenizerInfo(tok.to_str(), vocab, eos, pad, bos, tuple(notes), trained_on_bytes=seen[0],
                         mask_id=mask)
