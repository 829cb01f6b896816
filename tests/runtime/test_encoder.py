"""Masked-LM pretraining: packed bidirectional attention, BERT masking, encoder shards, resume, learning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import (AutoModelForMaskedLM, AutoTokenizer, BertConfig, DataCollatorForLanguageModeling,
                          ModernBertConfig, RobertaConfig)

from runtime import train as train_cli
from runtime.attention import encoder_model_inputs, packed_attention_mask
from runtime.checkpoints import latest_checkpoint
from runtime.config import LoaderConfig, MaskingConfig, OptimConfig, TrainConfig
from runtime.data import IGNORE_INDEX, PackedLoader, PackedManifest
from runtime.model import load_tokenizer
from runtime.objectives import MaskedLM, position_offset
from runtime.train import train
from schemas.packed import load_manifest

VOCAB = 97
SMALL = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "pad_token_id": 0}
ENCODERS = {
    "bert": lambda: BertConfig(**SMALL, num_hidden_layers=2, max_position_embeddings=64),
    # positions count from padding_idx + 1
    "roberta": lambda: RobertaConfig(**SMALL, num_hidden_layers=2, max_position_embeddings=64),
    # global and local layers; a window of 3 either side, shorter than the longest document
    "modernbert": lambda: ModernBertConfig(**SMALL, num_hidden_layers=3, global_attn_every_n_layers=2,
                                           local_attention=6, bos_token_id=1, eos_token_id=2, cls_token_id=1,
                                           sep_token_id=2),
}


def _packed_row(lengths: list[int], seq_len: int, generator: torch.Generator):
    docs = [torch.randint(3, VOCAB, (n,), generator=generator) for n in lengths]
    pad = seq_len - sum(lengths)
    ids = torch.cat(docs + [torch.zeros(pad, dtype=torch.long)])[None]
    seg = torch.cat([torch.full((n,), i + 1) for i, n in enumerate(lengths)] + [torch.zeros(pad, dtype=torch.long)])[None]
    pos = torch.cat([torch.arange(n) for n in lengths] + [torch.zeros(pad, dtype=torch.long)])[None]
    return docs, {"input_ids": ids, "segment_ids": seg, "position_ids": pos}


@pytest.mark.parametrize("arch", sorted(ENCODERS))
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_bidirectional_logits_equal_documents_alone(arch, impl):
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(ENCODERS[arch](), attn_implementation=impl).eval()
    docs, batch = _packed_row([5, 9, 1, 3], 24, torch.Generator().manual_seed(1))
    offset = position_offset(model)
    assert offset == (1 if arch == "roberta" else 0)
    with torch.no_grad():
        packed = model(**encoder_model_inputs(batch, model.config, torch.float32, offset)).logits[0]
        unmasked = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"] + offset).logits[0]
        start = 0
        for doc in docs:
            alone = model(input_ids=doc[None]).logits[0]  # the model's own positions and mask
            torch.testing.assert_close(packed[start:start + len(doc)], alone, atol=1e-5, rtol=0)
            start += len(doc)
    # without the mask every document would attend to the others (and to padding)
    assert (unmasked[:18] - packed[:18]).abs().max() > 1e-3
    assert torch.isfinite(packed).all()


def test_encoder_mask_is_block_diagonal_and_windowed():
    seg = torch.tensor([[1, 1, 1, 2, 2, 0]])
    assert packed_attention_mask(seg, causal=False)[0, 0].int().tolist() == [[1, 1, 1, 0, 0, 0],
                                                                               [1, 1, 1, 0, 0, 0],
                                                                               [1, 1, 1, 0, 0, 0],
                                                                               [0, 0, 0, 1, 1, 0],
                                                                               [0, 0, 0, 1, 1, 0],
                                                                               [0, 0, 0, 0, 0, 1]]
    assert packed_attention_mask(seg, causal=False, window=1)[0, 0].int().tolist()[0] == [1, 1, 0, 0, 0, 0]
    modern = ENCODERS["modernbert"]()
    modern._attn_implementation = "sdpa"
    long = torch.tensor([[1] * 8 + [2] * 2])  # a document longer than the local window (3 either side)
    masks = encoder_model_inputs({"input_ids": long, "segment_ids": long, "position_ids": long}, modern,
                                 torch.float32)["attention_mask"]
    assert set(masks) == {"full_attention", "sliding_attention"}  # one per layer type
    assert torch.equal(masks["full_attention"], packed_attention_mask(long, causal=False))
    assert torch.equal(masks["sliding_attention"], packed_attention_mask(long, causal=False, window=3))
    assert masks["sliding_attention"][0, 0, 0].tolist() == [True] * 4 + [False] * 6


@pytest.fixture(scope="module")
def masked_lm(encoder_packed_dir):
    manifest = PackedManifest.load(encoder_packed_dir)
    tokenizer = load_tokenizer(manifest)
    model = AutoModelForMaskedLM.from_config(BertConfig(vocab_size=manifest.vocab_size, hidden_size=32,
                                                        num_hidden_layers=1, num_attention_heads=4,
                                                        intermediate_size=64, max_position_embeddings=64))
    return MaskedLM(model, tokenizer, manifest, MaskingConfig()), manifest, tokenizer


def _synthetic_batch(manifest: PackedManifest, rows: int, seq_len: int, generator: torch.Generator):
    """Rows of [CLS] content [SEP] documents of random length, padding at the end."""
    ids = torch.randint(5, manifest.vocab_size, (rows, seq_len), generator=generator)
    seg = torch.zeros(rows, seq_len, dtype=torch.long)
    for r in range(rows):
        at, k = 0, 1
        end = seq_len - int(torch.randint(0, 40, (1,), generator=generator))
        while at < end - 2:
            n = min(int(torch.randint(3, 120, (1,), generator=generator)), end - at)
            ids[r, at], ids[r, at + n - 1] = manifest.cls_id, manifest.sep_id
            seg[r, at:at + n] = k
            at, k = at + n, k + 1
    ids[seg == 0] = manifest.pad_id
    return {"input_ids": ids, "segment_ids": seg}


def test_masking_statistics_on_a_large_sample(masked_lm):
    objective, manifest, tokenizer = masked_lm
    batch = _synthetic_batch(manifest, 256, 1024, torch.Generator().manual_seed(0))
    ids = batch["input_ids"]
    torch.manual_seed(0)
    out = objective.prepare(batch)
    special = (batch["segment_ids"] == 0) | torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    selected = out["labels"] != IGNORE_INDEX
    assert not (selected & special).any()  # padding, [CLS], [SEP] never selected...
    assert torch.equal(out["input_ids"][special], ids[special])  # ...nor changed
    assert torch.equal(out["labels"][selected], ids[selected])  # labels are the original tokens
    assert torch.equal(out["input_ids"][~selected], ids[~selected])

    def within_binomial(hits: int, n: int, p: float) -> bool:
        return abs(hits / n - p) < 5 * math.sqrt(p * (1 - p) / n)

    candidates, chosen, vocab = int((~special).sum()), int(selected.sum()), len(tokenizer)
    assert candidates > 200_000
    assert within_binomial(chosen, candidates, 0.15)
    now = out["input_ids"][selected]
    # a random replacement can draw [MASK] or the original token itself (probability 1/vocab each)
    assert within_binomial(int((now == manifest.mask_id).sum()), chosen, 0.8 + 0.1 / vocab)
    assert within_binomial(int((now == ids[selected]).sum()), chosen, 0.1 + 0.1 / vocab)
    assert within_binomial(int(((now != manifest.mask_id) & (now != ids[selected])).sum()), chosen, 0.1 - 0.2 / vocab)


def test_masking_is_transformers_collator(masked_lm):
    """Same seed, same masks as DataCollatorForLanguageModeling given the tokenizer's own special-token mask."""
    objective, manifest, tokenizer = masked_lm
    batch = _synthetic_batch(manifest, 4, 256, torch.Generator().manual_seed(1))
    batch["segment_ids"][:] = 1  # no padding: the tokenizer's rule alone decides
    torch.manual_seed(3)
    ours = objective.prepare(batch)
    rows = batch["input_ids"].tolist()
    features = [{"input_ids": r, "special_tokens_mask": tokenizer.get_special_tokens_mask(r, already_has_special_tokens=True)}
                for r in rows]
    assert torch.equal(objective.special_tokens_mask(batch).int(),
                       torch.tensor([f["special_tokens_mask"] for f in features]))
    torch.manual_seed(3)
    theirs = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)(features)
    assert torch.equal(ours["input_ids"], theirs["input_ids"]) and torch.equal(ours["labels"], theirs["labels"])


def test_encoder_shards_frame_documents_with_cls_and_sep(encoder_packed_dir):
    manifest = PackedManifest.load(encoder_packed_dir)
    tokenizer = load_tokenizer(manifest)
    assert tokenizer.convert_ids_to_tokens([manifest.mask_id, manifest.cls_id, manifest.sep_id, manifest.pad_id]) == \
        ["[MASK]", "[CLS]", "[SEP]", "[PAD]"]
    assert (manifest.cls_id, manifest.sep_id) == (manifest.bos_id, manifest.eos_id)
    assert load_manifest(encoder_packed_dir)["stats"]["documents_split"] == 0  # so every piece is a whole document
    batch = next(iter(PackedLoader(encoder_packed_dir, LoaderConfig(batch_size=64, shuffle=False), epochs=1)))
    ids, seg, pos = batch["input_ids"], batch["segment_ids"], batch["position_ids"]
    starts = torch.ones_like(seg, dtype=torch.bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    ends = torch.ones_like(seg, dtype=torch.bool)
    ends[:, :-1] = seg[:, 1:] != seg[:, :-1]
    real = seg > 0
    assert (ids[starts & real] == manifest.cls_id).all() and (pos[starts & real] == 0).all()
    assert (ids[ends & real] == manifest.sep_id).all()
    assert tokenizer("plums kale")["input_ids"] == [manifest.cls_id, *tokenizer.convert_tokens_to_ids(["plums", "kale"]),
                                                    manifest.sep_id]  # inference frames text the same way


def _mlm_cfg(manifest, config, output, steps, workers=0, **kw) -> TrainConfig:
    return TrainConfig(manifest=manifest, model_config=config, output=output, steps=steps, grad_accum=2,
                       objective="mlm", progress=False, log_every=1000,
                       loader=LoaderConfig(batch_size=4, num_workers=workers),
                       optim=OptimConfig(lr=1e-3, warmup_steps=2), **kw)


def test_mlm_resume_reproduces_the_uninterrupted_run(encoder_packed_dir, tmp_path):
    config = str(tmp_path / "config")  # dropout on: the restored RNG drives masking and dropout
    BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
               max_position_embeddings=64).save_pretrained(config)
    straight = train(_mlm_cfg(encoder_packed_dir, config, str(tmp_path / "a"), 6)).losses
    first = train(_mlm_cfg(encoder_packed_dir, config, str(tmp_path / "b"), 6, stop_after=2)).losses
    second = train(_mlm_cfg(encoder_packed_dir, config, str(tmp_path / "b"), 6, workers=2)).losses
    assert first + second == straight  # exact float equality
    a = AutoModelForMaskedLM.from_pretrained(latest_checkpoint(str(tmp_path / "a")))
    b = AutoModelForMaskedLM.from_pretrained(latest_checkpoint(str(tmp_path / "b")))
    for (name, pa_), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa_, pb), name
    assert type(a).__name__ == "BertForMaskedLM"
    assert AutoTokenizer.from_pretrained(latest_checkpoint(str(tmp_path / "b"))).mask_token == "[MASK]"


def unigram_entropy(manifest_dir: str) -> float:
    """Cross-entropy (nats) of the best context-free predictor of maskable tokens: their unigram distribution."""
    manifest = PackedManifest.load(manifest_dir)
    special = torch.tensor(load_tokenizer(manifest).all_special_ids)
    counts = np.zeros(manifest.vocab_size)
    for batch in PackedLoader(manifest_dir, LoaderConfig(batch_size=64, shuffle=False), epochs=1):
        ids = batch["input_ids"]
        np.add.at(counts, ids[(batch["segment_ids"] > 0) & ~torch.isin(ids, special)].numpy(), 1)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_short_mlm_run_beats_the_unigram_baseline(mlm_run, encoder_packed_dir):
    """Under one epoch, so every step's rows are unseen: the last steps' loss is a held-out loss."""
    rows = sum(s.rows for s in PackedManifest.load(encoder_packed_dir).shard_list("parquet"))
    assert mlm_run.rows_seen < rows
    losses = mlm_run.losses
    baseline, final = unigram_entropy(encoder_packed_dir), float(np.mean(losses[-10:]))
    print(json.dumps({"unigram_nats": baseline, "first_loss": losses[0], "mean_loss_last_10_steps": final,
                      "rows_seen": mlm_run.rows_seen, "rows": rows}))
    assert final < baseline - 0.2


def test_mlm_needs_an_encoder_manifest(packed_dir, tiny_bert_config, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--manifest", packed_dir, "--model-config", tiny_bert_config, "--output",
                        str(tmp_path / "x"), "--steps", "1", "--objective", "mlm", "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no mask_id" in err and "--mask-token" in err
    with pytest.raises(ValueError, match="sdpa or eager"):
        MaskedLM.attn_implementation("flash_attention_2", torch.device("cpu"))
