"""``corpus-prep-runtime train|generate [options]``: ``python -m runtime.train`` / ``runtime.generate`` as one installed command."""

from __future__ import annotations

import sys

from pipelines.entry import dispatch

COMMANDS = {
    "train": ("runtime.train", "train a causal LM on packed shards (python -m runtime.train)"),
    "generate": ("runtime.generate", "generate text from a checkpoint (python -m runtime.generate)"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("corpus-prep-runtime", "Train on and generate from corpus-prep's packed shards.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
