"""Encoder tasks from a checkpoint: ``python -m runtime.infer --checkpoint DIR --task TASK
--input FILE [--output FILE] [--batch-size N] [--top-k K]``. Each of DIR, FILE is a local path or
a URI (``gs://``, ``s3://``, ...); a remote checkpoint is fetched first, and without ``--output``
the answers go to stdout.

The input is JSON lines, one object per input, with the task's fields (``TASKS``)::

    fill-mask            {"text": "Paris is the [MASK] of France."}
    next-sentence        {"text": "A first sentence.", "text_pair": "A second one."}
    question-answering   {"question": "...", "context": "..."}
    text-classification  {"text": "..."}   (optionally "text_pair")

Each output line answers the input line at the same place. fill-mask and text-classification
run transformers' own pipelines and print exactly what they return for one input.
transformers 5 has no question-answering or next-sentence pipeline, so those run the model
classes: question answering prints the former pipeline's format (``score``, ``start``,
``end``, ``answer``; best span of at most ``MAX_ANSWER_TOKENS`` tokens over overlapping
windows of the context), next-sentence prints text-classification's (``label`` ``is_next`` or
``not_next``, ``score``).

The checkpoint must carry the task's head: its config's ``architectures`` must name one that
has it (next-sentence: a BERT ``ForPreTraining`` or ``ForNextSentencePrediction``), and
loading must find every weight. Otherwise the command stops with one line (exit 2) rather
than letting transformers initialise a random head.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import (AutoConfig, AutoModelForMaskedLM, AutoModelForNextSentencePrediction,
                          AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer,
                          PreTrainedModel, PreTrainedTokenizerBase, pipeline)

from pipelines.io import uri
from runtime.checkpoints import local_copy, resolve_model_dir
from runtime.cli import parse_config
from runtime.config import InferConfig
from runtime.objectives import position_offset

MAX_ANSWER_TOKENS = 30
NSP_LABELS = ("is_next", "not_next")  # BERT's convention: class 0 means text_pair follows text


class InferError(ValueError):
    """A checkpoint without the task's head, or an input the task cannot take."""


@dataclass(frozen=True)
class Task:
    fields: tuple[str, ...]  # required in every input object
    heads: tuple[str, ...]  # architecture name endings that carry the head
    auto_class: type
    optional: tuple[str, ...] = ()


TASKS = {
    "fill-mask": Task(("text",), ("ForMaskedLM", "ForPreTraining"), AutoModelForMaskedLM),
    "next-sentence": Task(("text", "text_pair"), ("ForPreTraining", "ForNextSentencePrediction"),
                          AutoModelForNextSentencePrediction),
    "question-answering": Task(("question", "context"), ("ForQuestionAnswering",), AutoModelForQuestionAnswering),
    "text-classification": Task(("text",), ("ForSequenceClassification",), AutoModelForSequenceClassification,
                                optional=("text_pair",)),
}


def load_task_model(checkpoint: str, task: str) -> PreTrainedModel:
    """The checkpoint's model with ``task``'s head, refusing one whose head would be random."""
    spec = TASKS[task]
    try:
        architectures = AutoConfig.from_pretrained(checkpoint).architectures or []
    except OSError as err:
        raise InferError(f"{checkpoint!r} is not a model checkpoint ({err})") from None
    if not any(a.endswith(h) for a in architectures for h in spec.heads):
        need = "a BERT ForPreTraining (or ForNextSentencePrediction) checkpoint" if task == "next-sentence" else \
            "a checkpoint saved as *" + " or *".join(spec.heads)
        raise InferError(f"{checkpoint!r} has no {task} head (architectures: {architectures or 'none recorded'}); "
                         f"{task} needs {need}")
    try:
        model, info = spec.auto_class.from_pretrained(checkpoint, output_loading_info=True)
    except ValueError as err:  # an architecture the task's Auto class does not know (e.g. next-sentence)
        raise InferError(f"{checkpoint!r} cannot run {task}: {err}".splitlines()[0]) from None
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise InferError(f"{checkpoint!r} lacks {len(missing)} weights of the {task} model "
                         f"({', '.join(missing[:4])}...); refusing to run it with random ones")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval()


def read_inputs(path: str, task: str) -> list[dict]:
    """The input objects, checked for the task's fields (errors name the line)."""
    spec = TASKS[task]
    records = []
    with uri.open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InferError(f"{path}:{number}: not JSON ({err})") from None
            if not isinstance(record, dict) or any(not isinstance(record.get(f), str) for f in spec.fields):
                raise InferError(f"{path}:{number}: {task} needs an object with string fields "
                                 f"{', '.join(spec.fields)}")
            records.append({f: record[f] for f in spec.fields + spec.optional if f in record})
    return records


def _batches(records: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def _max_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """Longest input the model takes: the tokenizer's limit (the packed row length) or its positions."""
    positions = getattr(model.config, "max_position_embeddings", None)
    limit = positions - position_offset(model) if positions else tokenizer.model_max_length
    return min(tokenizer.model_max_length, limit)


def next_sentence(model, tokenizer, records: list[dict], cfg: InferConfig) -> Iterator:
    """text-classification's format: the best label, or the ``top_k`` best as a list."""
    for chunk in _batches(records, cfg.batch_size):
        inputs = tokenizer([r["text"] for r in chunk], [r["text_pair"] for r in chunk], padding=True,
                           truncation=True, max_length=_max_length(model, tokenizer), return_tensors="pt")
        with torch.inference_mode():
            probs = model(**inputs.to(model.device)).logits.float().softmax(-1).cpu()
        for row in probs.tolist():
            ranked = sorted(({"label": label, "score": score} for label, score in zip(NSP_LABELS, row)),
                            key=lambda r: -r["score"])
            yield ranked[:cfg.top_k] if cfg.top_k else ranked[0]


def answer_questions(model, tokenizer, records: list[dict], cfg: InferConfig) -> Iterator:
    """Best answer spans in the context, over overlapping windows when it does not fit one.

    As the former transformers pipeline: start and end probabilities are softmaxes over the
    context tokens of a window, a span's score is their product, spans end after they start
    and are at most ``MAX_ANSWER_TOKENS`` long.
    """
    max_length = _max_length(model, tokenizer)
    for chunk in _batches(records, cfg.batch_size):
        inputs = tokenizer([r["question"] for r in chunk], [r["context"] for r in chunk], padding=True,
                           truncation="only_second", max_length=max_length, stride=max_length // 4,
                           return_overflowing_tokens=True, return_offsets_mapping=True, return_tensors="pt")
        owner = inputs.pop("overflow_to_sample_mapping").tolist()
        offsets = inputs.pop("offset_mapping").tolist()
        with torch.inference_mode():
            out = model(**inputs.to(model.device))
        candidates: list[list[tuple[float, int, int]]] = [[] for _ in chunk]
        for window, record in enumerate(owner):
            context = torch.tensor([s == 1 for s in inputs.sequence_ids(window)])
            start = out.start_logits[window].float().cpu().masked_fill(~context, -1e4).softmax(-1)
            end = out.end_logits[window].float().cpu().masked_fill(~context, -1e4).softmax(-1)
            scores = (start[:, None] * end[None, :]).triu().tril(MAX_ANSWER_TOKENS - 1)
            best = scores.flatten().topk(min(cfg.top_k or 1, scores.numel()))
            for score, index in zip(best.values.tolist(), best.indices.tolist()):
                s, e = divmod(index, scores.shape[1])
                candidates[record].append((score, offsets[window][s][0], offsets[window][e][1]))
        for record, found in zip(chunk, candidates):
            spans: dict[tuple[int, int], float] = {}  # overlapping windows can find the same span
            for score, a, b in found:
                spans[a, b] = max(score, spans.get((a, b), 0.0))
            ranked = [{"score": score, "start": a, "end": b, "answer": record["context"][a:b]}
                      for (a, b), score in sorted(spans.items(), key=lambda c: -c[1])[:cfg.top_k or 1]]
            yield ranked if cfg.top_k else ranked[0]


def run_pipeline(model, tokenizer, records: list[dict], cfg: InferConfig) -> Iterator:
    """transformers' pipeline over a generator: one output per input, in order, never unwrapped."""
    pipe = pipeline(cfg.task, model=model, tokenizer=tokenizer, device=model.device)
    if cfg.task == "fill-mask":
        for number, record in enumerate(records, 1):
            if tokenizer.mask_token not in record["text"]:
                raise InferError(f"{cfg.input}: input {number} has no {tokenizer.mask_token} to fill")
        inputs = (r["text"] for r in records)
    else:
        inputs = (r if "text_pair" in r else r["text"] for r in records)
    kwargs = {"top_k": cfg.top_k} if cfg.top_k else {}
    yield from pipe(inputs, batch_size=cfg.batch_size, **kwargs)


def infer(cfg: InferConfig) -> Iterator:
    """One result per input record, in order."""
    records = read_inputs(cfg.input, cfg.task)
    model = load_task_model(cfg.checkpoint, cfg.task)
    tokenizer = AutoTokenizer.from_pretrained(cfg.checkpoint)
    run = {"next-sentence": next_sentence, "question-answering": answer_questions}.get(cfg.task, run_pipeline)
    return run(model, tokenizer, records, cfg)


def _plain(value):
    """JSON for the numpy/torch scalars pipelines return."""
    return value.item() if hasattr(value, "item") else str(value)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(InferConfig, argv, "Run an encoder task (fill-mask, next-sentence, question-answering, "
                                          "text-classification) from a checkpoint on JSON lines.")
    try:  # a training output means its newest complete checkpoint; a bucket URI is fetched first
        cfg = dataclasses.replace(cfg, checkpoint=local_copy(resolve_model_dir(cfg.checkpoint)))
        results = infer(cfg)
        with uri.open_text(cfg.output, "w") if cfg.output else contextlib.nullcontext(sys.stdout) as out:
            for result in results:
                out.write(json.dumps(result, default=_plain) + "\n")
    except (InferError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
