"""``python -m dataproc COMMAND``: build, upload, create a cluster, submit — ``--dry-run`` prints the exact command.

    python -m dataproc package [--env-python /opt/conda/default/bin/python]
    python -m dataproc upload  --project P --region R --artifacts gs://B/corpus-prep/0.1.0 [--dry-run]   # what package built
    python -m dataproc create-cluster --project P --region R --artifacts … [--name N --num-workers 8] [--dry-run]
    python -m dataproc submit --project P --region R --artifacts … --cluster N -- --input gs://… --output gs://… [--dry-run]
    python -m dataproc batch  --project P --region R --artifacts … --batch-id ID -- --input … --output … [--dry-run]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from dataproc import commands
from dataproc.package import build
from pipelines.cli import HelpFormatter


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dataproc", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pkg = sub.add_parser("package", help="build dist/: wheel, entry script, packed environment",
                         formatter_class=HelpFormatter)
    pkg.add_argument("--dist", default="dist", help="output folder")
    pkg.add_argument("--env-python", help="interpreter of the target runtime (builds the packed environment)")
    shape = commands.ClusterShape()
    for name in ("upload", "create-cluster", "submit", "batch"):
        c = sub.add_parser(name, formatter_class=HelpFormatter)
        c.add_argument("--project", required=True, help="Google Cloud project")
        c.add_argument("--region", required=True, help="Dataproc region, e.g. europe-west4")
        c.add_argument("--artifacts", required=True, help="gs:// folder holding the uploaded dist/ files")
        c.add_argument("--dry-run", action="store_true", help="print the gcloud command instead of running it")
        if name == "upload":
            c.add_argument("--dist", default="dist", help="what package built (the environment archive only if present)")
        if name == "create-cluster":
            c.add_argument("--name", default=shape.name, help="cluster name")
            c.add_argument("--num-workers", type=int, default=shape.num_workers, help="worker nodes")
            c.add_argument("--worker-machine-type", default=shape.worker_machine_type,
                           help="worker machine type (executors are sized from it)")
        if name == "submit":
            c.add_argument("--cluster", default=shape.name, help="cluster to submit to")
        if name == "batch":
            c.add_argument("--batch-id", required=True, help="unique per batch: lowercase letters, digits, hyphens")
        if name in ("submit", "batch"):
            c.add_argument("job_args", nargs=argparse.REMAINDER, help="-- then jobs/prepare.py arguments")
    return p


def command(args: argparse.Namespace) -> list[str]:
    target = commands.Target(args.project, args.region, args.artifacts)
    if args.command == "upload":
        return commands.upload(target, args.dist)
    if args.command == "create-cluster":
        shape = commands.ClusterShape(name=args.name, num_workers=args.num_workers,
                                      worker_machine_type=args.worker_machine_type)
        return commands.create_cluster(target, shape)
    job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args
    if args.command == "submit":
        return commands.submit_job(target, args.cluster, job_args)
    return commands.submit_batch(target, args.batch_id, job_args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "package":
        for path in build(Path(args.dist), args.env_python):
            print(path)
        return 0
    try:
        argv_out = command(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(shlex.join(argv_out))
        return 0
    return subprocess.run(argv_out).returncode


if __name__ == "__main__":
    sys.exit(main())
