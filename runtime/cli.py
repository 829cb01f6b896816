"""Command-line parsers generated from the config dataclasses (``pipelines.options``).

Every field becomes ``--field-name`` with the dataclass default, so the CLI can never drift
from ``runtime.config``. Nested dataclass fields (``loader``, ``optim``) are flattened; every
bool has both forms (``--shuffle``/``--no-shuffle``).
"""

from __future__ import annotations

import argparse
from typing import TypeVar

from pipelines.options import add_fields, build

T = TypeVar("T")


def parse_config(cls: type[T], argv: list[str] | None, description: str) -> T:
    parser = argparse.ArgumentParser(description=description)
    add_fields(parser, cls, negatable=True)
    args = parser.parse_args(argv)
    try:
        return build(cls, vars(args))
    except ValueError as err:
        parser.error(str(err))
