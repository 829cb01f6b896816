"""Console scripts with subcommands (``corpus-prep dedup …``, ``corpus-prep-runtime train …``).

A subcommand is a module's own ``main(argv)``, so it takes exactly the options of the script
behind it (``jobs/dedup.py``, ``python -m runtime.train``); only the name in its usage line
changes. Modules are imported when chosen: ``corpus-prep --help`` starts neither Spark nor torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipelines.cli import invoked_as


def dispatch(prog: str, description: str, commands: dict[str, tuple[str, str]], argv: list[str] | None = None) -> int:
    """Run ``commands[name] = (module, help)``'s ``main`` with the arguments after ``name``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in commands:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        for name, (_, help_text) in commands.items():
            sub.add_parser(name, help=help_text, add_help=False)
        parser.parse_args(argv[:1])  # prints the usage (or the list of commands for --help) and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(commands[name][0])
    shown = f"{prog} {name}"
    saved, sys.argv[0] = sys.argv[0], shown  # parsers that take their name from argv[0]
    try:
        with invoked_as(shown):
            code = module.main(rest)
    finally:
        sys.argv[0] = saved
    return 0 if code is None else int(code)
