"""Command line of ``jobs/dedup.py``; every default is read from ``pipelines.config``."""

from __future__ import annotations

import argparse

from pipelines.cli import JobParser, add_input_arguments, add_spark_arguments, input_config, spark_config
from pipelines.config import DEDUP_SPARK, DedupConfig, IndexConfig, KeepPolicy, LshConfig, MinHashConfig, VerifyMode
from pipelines.logs import add_logging_arguments


def add_dedup_arguments(parser: argparse.ArgumentParser) -> None:
    """The dedup settings (shingles, MinHash, LSH, verification, survivors, skew) on ``parser`` or a group."""
    mh, lsh, dd = MinHashConfig(), LshConfig(), DedupConfig
    parser.add_argument("--ngram", type=int, default=mh.ngram, help="shingle size in words (or characters)")
    parser.add_argument("--char-ngrams", action="store_true", help="shingle characters instead of words")
    parser.add_argument("--num-perm", type=int, default=mh.num_perm, help="MinHash permutations")
    parser.add_argument("--seed", type=int, default=mh.seed, help="seed of the permutation draw")
    parser.add_argument("--threshold", type=float, default=lsh.threshold, help="Jaccard similarity threshold")
    parser.add_argument("--bands", type=int, default=None, help="LSH bands (with --rows; default: optimal)")
    parser.add_argument("--rows", type=int, default=None, help="rows per band (with --bands)")
    parser.add_argument("--verify", default=lsh.verify.value, choices=[m.value for m in VerifyMode],
                        help="exact: exact Jaccard decides wherever the signature estimate is within "
                             f"{lsh.uncertain_within_se:g} standard errors of the threshold (default); estimate: the "
                             "signature estimate alone; off: every LSH candidate is a duplicate edge")
    parser.add_argument("--no-verify", dest="verify", action="store_const", const=VerifyMode.OFF.value,
                        help="same as --verify off")
    parser.add_argument("--uncertain-within-se", type=float, default=lsh.uncertain_within_se,
                        help="under --verify exact, estimates this many standard errors or closer to the "
                             "threshold get their exact Jaccard")
    parser.add_argument("--all-pairs-bucket", type=int, default=lsh.all_pairs_bucket,
                        help="LSH buckets of up to this many documents are compared pair by pair")
    parser.add_argument("--bucket-neighbours", type=int, default=lsh.bucket_neighbours,
                        help="in larger buckets, each document is compared with this many random members per band")
    parser.add_argument("--keep", default=KeepPolicy.SMALLEST_ID.value,
                        choices=[KeepPolicy.SMALLEST_ID.value, KeepPolicy.LONGEST.value],
                        help="survivor of each cluster")
    parser.add_argument("--keep-priority", metavar="COLUMN", default=None,
                        help="keep the member with the highest value of COLUMN (ties: smallest id)")
    parser.add_argument("--hub-degree", type=int, default=dd.hub_degree,
                        help="nodes/clusters with this many rows are joined by broadcast, not shuffled to one task; "
                             "exact verification scores pairs in homes of at most this many documents")
    parser.add_argument("--giant-cluster-size", type=int, default=dd.giant_cluster_size,
                        help="clusters of this many documents are listed in stats.json (giant_clusters)")
    g = parser.add_argument_group("incremental dedup (indexes of earlier runs)")
    g.add_argument("--against", metavar="DIR[,DIR...]", type=_dirs, default=None,
                   help="deduplicate against these indexes: documents near an indexed one are removed "
                        "(match index); indexed documents win and are never rewritten")
    g.add_argument("--save-index", metavar="DIR", default=IndexConfig.save,
                   help="write an index of every document of this run, for later --against")
    g.add_argument("--update-index", metavar="DIR", default=IndexConfig.update,
                   help="write the --against indexes and this run's as one index (replacing DIR if it is one of them)")


def _dirs(text: str) -> tuple[str, ...]:
    """``DIR[,DIR…]``: a comma-separated list of directories."""
    dirs = tuple(d.strip() for d in text.split(",") if d.strip())
    if not dirs:
        raise argparse.ArgumentTypeError("expected one or more directories, separated by commas")
    return dirs


def dedup_parser() -> argparse.ArgumentParser:
    p = JobParser(
        prog="jobs/dedup.py",
        description="Remove exact and near-duplicate documents (MinHash LSH, verified edges, "
                    "connected components); writes data/, duplicates/, rejected/, stats.json.")
    add_input_arguments(p)
    p.add_argument("--output", required=True, help="output directory (must not exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    add_dedup_arguments(p)
    add_spark_arguments(p, DEDUP_SPARK)
    add_logging_arguments(p)
    return p


def dedup_config(args: argparse.Namespace) -> DedupConfig:
    keep = KeepPolicy.PRIORITY if args.keep_priority else KeepPolicy(args.keep)
    return DedupConfig(
        input=input_config(args),
        output=args.output,
        overwrite=args.overwrite,
        minhash=MinHashConfig(ngram=args.ngram, char_ngrams=args.char_ngrams, num_perm=args.num_perm,
                              seed=args.seed),
        lsh=LshConfig(threshold=args.threshold, bands=args.bands, rows=args.rows, verify=VerifyMode(args.verify),
                      uncertain_within_se=args.uncertain_within_se, all_pairs_bucket=args.all_pairs_bucket,
                      bucket_neighbours=args.bucket_neighbours),
        keep=keep,
        keep_priority_column=args.keep_priority,
        hub_degree=args.hub_degree,
        giant_cluster_size=args.giant_cluster_size,
        spark=spark_config(args, "corpus-prep-dedup"),
        index=IndexConfig(against=args.against or IndexConfig.against, save=args.save_index, update=args.update_index),
    )
