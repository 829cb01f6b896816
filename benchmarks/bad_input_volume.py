"""Bad input at volume: a JSON Lines corpus with 1% malformed records and 10 MB documents.

    python benchmarks/bad_input_volume.py --records 200000 --work /tmp/bad-input

The malformed 1% is split evenly over seven kinds: a number, an object and an array where the
text should be, invalid UTF-8, a truncated line, a JSON ``null`` line and a JSON array line.
Also planted: 0.2% records whose text is ``null`` (documents with empty text, by contract, not
rejects) and ``--big`` documents of ``--big-mb`` MB each. The job runs in ``local[2]``;
the script checks that every planted bad line is in ``rejected/`` verbatim with its expected
reason, that nothing else is, and that input = documents + rejected and documents = kept +
removed, and prints the counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipelines.config import DedupConfig, InputConfig, SparkConfig  # noqa: E402
from pipelines.dedup.pipeline import run_dedup  # noqa: E402

BAD_KINDS = {
    "number": (lambda i: b'{"content": %d, "id": %d}' % (i, i), "text field 'content' is BIGINT, not a string"),
    "object": (lambda i: b'{"content": {"k": %d}, "id": %d}' % (i, i),
               "text field 'content' is OBJECT<k: BIGINT>, not a string"),
    "array": (lambda i: b'{"content": ["a", "b"], "id": %d}' % i, "text field 'content' is ARRAY<STRING>, not a string"),
    "invalid_utf8": (lambda i: b'{"content": "bytes \xff\xfe\xfd here", "id": %d}' % i, "invalid UTF-8"),
    "truncated": (lambda i: b'{"content": "cut off in the midd', "malformed JSON"),
    "null_line": (lambda i: b"null", "JSON value is not an object"),
    "array_line": (lambda i: b'[%d, "x"]' % i, "JSON value is not an object"),
}


def write_corpus(path: str, records: int, big: int, big_mb: int, seed: int = 0) -> dict:
    """Write the corpus; return what was planted: ``{kind: [lines]}``, plus counts."""
    rng = np.random.default_rng(seed)
    vocab = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 7)) for _ in range(20000)])
    kinds = list(BAD_KINDS)
    n_bad = records // 100
    n_null = records // 500
    slots = rng.permutation(records)
    bad_at = {int(s): kinds[k % len(kinds)] for k, s in enumerate(slots[:n_bad])}
    null_at = {int(s) for s in slots[n_bad:n_bad + n_null]}
    big_at = {int(s) for s in slots[n_bad + n_null:n_bad + n_null + big]}
    planted = collections.defaultdict(list)
    with open(path, "wb") as fh:
        for i in range(records):
            if i in bad_at:
                line = BAD_KINDS[bad_at[i]][0](i)
                planted[bad_at[i]].append(line)
            elif i in null_at:
                line = b'{"content": null, "id": %d}' % i
            else:
                words = big_mb * 2**20 // 8 if i in big_at else int(rng.integers(30, 200))
                text = " ".join(vocab[rng.integers(len(vocab), size=words)])
                line = json.dumps({"content": text, "id": i}).encode()
            fh.write(line + b"\n")
    return {"bad": dict(planted), "null_text": n_null, "big": len(big_at)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--big", type=int, default=5)
    parser.add_argument("--big-mb", type=int, default=10)
    parser.add_argument("--work", default="/tmp/bad-input")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    corpus = os.path.join(args.work, "corpus.jsonl")
    planted = write_corpus(corpus, args.records, args.big, args.big_mb)
    cfg = DedupConfig(input=InputConfig(path=corpus), output=os.path.join(args.work, "out"),
                      spark=SparkConfig(master="local[2]", driver_memory="4g", ui=False, log_level="ERROR"))
    start = time.perf_counter()
    stats = run_dedup(cfg).stats
    seconds = time.perf_counter() - start

    rejected = pq.read_table(os.path.join(cfg.output, "rejected")).to_pylist()
    found = collections.Counter((r["record"], r["reason"]) for r in rejected)
    expected = collections.Counter((line, BAD_KINDS[kind][1]) for kind, lines in planted["bad"].items()
                                   for line in lines)
    n_bad = sum(expected.values())
    kept = pq.read_table(os.path.join(cfg.output, "data"), columns=["content"]).column("content")
    biggest = max((len(t) for t in kept.to_pylist() if t), default=0)
    checks = {
        "every bad record rejected with its reason, nothing else": found == expected,
        "input = documents + rejected": stats["input_records"] == args.records
        == stats["documents"] + stats["rejected"],
        "rejected = planted bad records": stats["rejected"] == n_bad,
        "documents = kept + exact + near": stats["documents"] == stats["kept"] + stats["exact_duplicates"]
        + stats["near_duplicates"],
        "null texts counted as empty documents": stats["empty"] == planted["null_text"],
        f"{args.big} documents of {args.big_mb} MB kept": biggest >= args.big_mb * 2**20 * 0.99,
    }
    print(json.dumps({
        "records": args.records, "corpus_mb": round(os.path.getsize(corpus) / 2**20, 1),
        "planted_bad": {k: len(v) for k, v in planted["bad"].items()}, "null_text": planted["null_text"],
        "big_documents": planted["big"], "seconds": round(seconds, 1),
        "stats": {k: stats[k] for k in ("input_records", "documents", "rejected", "empty", "kept",
                                        "exact_duplicates", "near_duplicates")},
        "rejected_by_reason": dict(collections.Counter(r["reason"] for r in rejected)),
        "checks": checks}, indent=2))
    if not all(checks.values()):
        sys.exit("a check failed")


if __name__ == "__main__":
    main()
