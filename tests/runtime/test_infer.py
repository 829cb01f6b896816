"""Encoder inference: pipelines' own outputs, question answering and next-sentence on tiny heads, refused heads."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from transformers import (AutoModelForNextSentencePrediction, AutoModelForQuestionAnswering, AutoTokenizer,
                          BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification, pipeline)

from pipelines.io import uri
from runtime import infer as infer_cli

CONTEXT = "plums kale plums kale kale plums " * 12  # longer than one 64-token window: several windows


@pytest.fixture(scope="module")
def heads(mlm_run, tmp_path_factory) -> dict[str, str]:
    """Checkpoints with the task heads, made from the MLM checkpoint (the heads themselves are untrained)."""
    root = tmp_path_factory.mktemp("heads")
    tokenizer = AutoTokenizer.from_pretrained(mlm_run.checkpoint)
    made = {}
    for task, cls, kwargs in [("question-answering", BertForQuestionAnswering, {}),
                              ("text-classification", BertForSequenceClassification,
                               {"num_labels": 3, "id2label": {0: "sweet", 1: "savoury", 2: "sour"}}),
                              ("next-sentence", BertForPreTraining, {})]:
        torch.manual_seed(0)
        path = str(root / task)
        cls.from_pretrained(mlm_run.checkpoint, **kwargs).save_pretrained(path)
        tokenizer.save_pretrained(path)
        made[task] = path
    return made


def _run(capsys, tmp_path, checkpoint: str, task: str, records: list[dict], *flags) -> list:
    source = tmp_path / f"{task}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    infer_cli.main(["--checkpoint", checkpoint, "--task", task, "--input", str(source), "--batch-size", "2", *flags])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _error(capsys, tmp_path, checkpoint: str, task: str, records: list[dict]) -> str:
    with pytest.raises(SystemExit) as exc:
        _run(capsys, tmp_path, checkpoint, task, records)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("error: ")
    return err[-1]


def test_fill_mask_returns_the_pipelines_own_output(capsys, tmp_path, mlm_run):
    texts = ["plums plums kale [MASK] plums kale", "figs figs [MASK] figs", "tea [MASK] milk [MASK] tea"]
    printed = _run(capsys, tmp_path, mlm_run.checkpoint, "fill-mask", [{"text": t} for t in texts])
    # The same batches as the CLI's --batch-size 2: padding a text to its batch's longest changes
    # the last bits of its scores, enough to swap two candidates that nearly tie.
    fill = pipeline("fill-mask", model=mlm_run.checkpoint)
    assert printed == json.loads(json.dumps(fill(texts, batch_size=2)))
    assert len(printed[0]) == 5 and set(printed[0][0]) == {"score", "token", "token_str", "sequence"}
    assert len(printed[2]) == 2  # one list of candidates per [MASK]
    top3 = _run(capsys, tmp_path, mlm_run.checkpoint, "fill-mask", [{"text": texts[1]}], "--top-k", "3")
    assert top3 == [json.loads(json.dumps(fill(texts[1], top_k=3)))]
    assert len(top3[0]) == 3


def test_checkpoint_input_and_output_on_a_uri(capsys, tmp_path, mlm_run):
    """fsspec's memory:// stands in for a bucket: the answers written there are the pipeline's own."""
    texts = ["figs figs [MASK] figs", "tea [MASK] milk"]
    root = f"memory://infer-{tmp_path.name}"
    uri.upload_dir(mlm_run.checkpoint, root + "/ckpt")
    uri.write_bytes(root + "/in.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts).encode())
    infer_cli.main(["--checkpoint", root + "/ckpt", "--task", "fill-mask", "--input", root + "/in.jsonl",
                    "--output", root + "/out/answers.jsonl", "--batch-size", "1"])  # as the pipeline runs them
    assert capsys.readouterr().out == ""
    written = [json.loads(line) for line in uri.read_bytes(root + "/out/answers.jsonl").decode().splitlines()]
    assert written == json.loads(json.dumps(pipeline("fill-mask", model=mlm_run.checkpoint)(texts)))


def test_text_classification_returns_the_pipelines_own_output(capsys, tmp_path, heads):
    records = [{"text": "honey tea"}, {"text": "salt", "text_pair": "pepper onion"}, {"text": "lime"}]
    printed = _run(capsys, tmp_path, heads["text-classification"], "text-classification", records)
    direct = pipeline("text-classification", model=heads["text-classification"])
    inputs = [r if "text_pair" in r else r["text"] for r in records]
    assert printed == json.loads(json.dumps(direct(inputs, batch_size=2)))  # the CLI's batches (see fill-mask)
    assert {p["label"] for p in printed} <= {"sweet", "savoury", "sour"}
    ranked = _run(capsys, tmp_path, heads["text-classification"], "text-classification", records[:1], "--top-k", "3")
    assert [r["label"] for r in ranked[0]] == [r["label"] for r in direct("honey tea", top_k=3)]


def _best_span(checkpoint: str, question: str, context: str) -> tuple[float, str]:
    """The best span of the first window by brute force over (start, end) pairs."""
    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    enc = tokenizer(question, context, truncation="only_second", max_length=tokenizer.model_max_length,
                    return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    ctx = [i for i, s in enumerate(enc.sequence_ids(0)) if s == 1]
    with torch.no_grad():
        out = model(**enc)
    start, end = out.start_logits[0, ctx].softmax(-1), out.end_logits[0, ctx].softmax(-1)
    score, (s, e) = max((float(start[a] * end[b]), (a, b)) for a in range(len(ctx)) for b in range(a, min(a + 30, len(ctx))))
    return score, context[offsets[ctx[s]][0]:offsets[ctx[e]][1]]


def test_question_answering_on_a_tiny_head(capsys, tmp_path, heads):
    records = [{"question": "which fruit?", "context": "figs and dates with honey"},
               {"question": "what is green?", "context": CONTEXT}]
    printed = _run(capsys, tmp_path, heads["question-answering"], "question-answering", records)
    for answer, record in zip(printed, records):
        assert set(answer) == {"score", "start", "end", "answer"}
        assert record["context"][answer["start"]:answer["end"]] == answer["answer"] and answer["answer"]
        assert 0 < answer["score"] <= 1
    score, text = _best_span(heads["question-answering"], **records[0])
    assert printed[0]["answer"] == text and printed[0]["score"] == pytest.approx(score, rel=1e-5)
    top = _run(capsys, tmp_path, heads["question-answering"], "question-answering", records[1:], "--top-k", "3")[0]
    assert len(top) == 3 and [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert top[0] == printed[1]  # the best over all windows


def test_next_sentence_on_a_pretraining_head(capsys, tmp_path, heads):
    records = [{"text": "plums and kale", "text_pair": "kale and plums"}, {"text": "tea", "text_pair": "salt salt"}]
    printed = _run(capsys, tmp_path, heads["next-sentence"], "next-sentence", records)
    model = AutoModelForNextSentencePrediction.from_pretrained(heads["next-sentence"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(heads["next-sentence"])
    with torch.no_grad():
        probs = model(**tokenizer([r["text"] for r in records], [r["text_pair"] for r in records], padding=True,
                                  return_tensors="pt")).logits.softmax(-1)
    for answer, p in zip(printed, probs.tolist()):
        assert answer == {"label": "is_next" if p[0] >= p[1] else "not_next", "score": pytest.approx(max(p), rel=1e-5)}
    enc = tokenizer("plums and kale", "kale and plums")
    assert set(enc["token_type_ids"]) == {0, 1}  # the pair's segments reach BERT's token types


def test_missing_heads_are_refused(capsys, tmp_path, mlm_run):
    question = [{"question": "q", "context": "c"}]
    err = _error(capsys, tmp_path, mlm_run.checkpoint, "question-answering", question)
    assert "no question-answering head" in err and "BertForMaskedLM" in err
    err = _error(capsys, tmp_path, mlm_run.checkpoint, "next-sentence", [{"text": "a", "text_pair": "b"}])
    assert "ForPreTraining" in err
    # a config that claims the head while the weights lack it: refused, not initialised at random
    spoofed = str(tmp_path / "spoofed")
    shutil.copytree(mlm_run.checkpoint, spoofed)
    config = json.load(open(os.path.join(spoofed, "config.json")))
    json.dump({**config, "architectures": ["BertForQuestionAnswering"]}, open(os.path.join(spoofed, "config.json"), "w"))
    err = _error(capsys, tmp_path, spoofed, "question-answering", question)
    assert "qa_outputs" in err and "random" in err


def test_bad_inputs_name_the_line(capsys, tmp_path, mlm_run):
    err = _error(capsys, tmp_path, mlm_run.checkpoint, "fill-mask", [{"text": "plums [MASK]"}, {"txt": "x"}])
    assert "fill-mask.jsonl:2" in err and "text" in err
    err = _error(capsys, tmp_path, mlm_run.checkpoint, "fill-mask", [{"text": "no mask here"}])
    assert "[MASK]" in err
