"""The tokenize-and-pack part of the run report, from ``manifest.json``."""

from __future__ import annotations

from pipelines.report import charts
from pipelines.report.html import Raw, figure, key_values, paragraph, section

IMAGE = "pack_fill.png"


def images(manifest: dict) -> dict[str, bytes]:
    shards = next(iter(manifest["shards"].values()), [])  # none when only Megatron files were written
    seq_len = manifest["seq_len"]
    fill = [s["tokens"] / (s["rows"] * seq_len) if s["rows"] else 0.0 for s in shards]
    return {IMAGE: charts.shard_fill(fill, manifest["stats"]["fill_rate"])}


def sections(manifest: dict, image_dir: str) -> list[Raw]:
    t, s = manifest["totals"], manifest["stats"]
    tokenizer = manifest["tokenizer_source"]
    source = (f"trained on the corpus ({tokenizer['trained_on_bytes']:,} bytes)" if tokenizer.get("trained")
              else f"from {tokenizer['file']}")
    return [section(
        "Tokenize and pack",
        paragraph(f"{t['rows']:,} rows of {manifest['seq_len']:,} tokens in {t['shards']:,} shard{'s' if t['shards'] != 1 else ''} "
                  f"({', '.join([*manifest['shards'], *(['megatron'] if 'megatron' in manifest else [])])}); packing: {manifest['packing']}; tokenizer {source}, "
                  f"vocabulary {manifest['vocab_size']:,}."),
        key_values([
            ("documents in", s["input_documents"]),
            ("null / empty texts skipped", Raw(f"{s['null_text']:,} / {s['empty_text']:,}")),
            ("documents packed", t["documents"]),
            ("documents split across rows", Raw(f"{s['documents_split']:,} ({s['fraction_split']:.1%})")),
            ("tokens (specials included)", t["tokens"]),
            ("padding tokens", t["padding_tokens"]),
            ("fill rate", Raw(f"{s['fill_rate']:.2%}")),
            ("tokens dropped by the cap", s["tokens_dropped"]),
            ("longest document (tokens)", s["longest_document"]),
        ]),
        figure(f"{image_dir}/{IMAGE}", "Share of each shard's token slots that hold tokens; dashed: overall.",
               "packing fill per shard"))]
