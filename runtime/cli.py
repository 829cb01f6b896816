"""Command-line parsers generated from the config dataclasses.

Every field becomes ``--field-name`` with the dataclass default, so the CLI can never drift
from ``runtime.config``. Nested dataclass fields (``loader``, ``optim``) are flattened.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(type, optional) for ``X`` or ``X | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _add_fields(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, _ = _base_type(hints[f.name])
        if dataclasses.is_dataclass(hint):
            _add_fields(parser, hint)
            continue
        flag = "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(hint) is tuple:
            parser.add_argument(flag, action="append", required=required,
                                type=typing.get_args(hint)[0], help="repeatable")
        else:
            parser.add_argument(flag, type=hint, default=default, required=required,
                                help=None if required else f"default: {default}")


def _build(cls: type[T], values: dict[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint, _ = _base_type(hints[f.name])
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, values)
        elif typing.get_origin(hint) is tuple:
            kwargs[f.name] = tuple(values[f.name] or ())
        else:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def parse_config(cls: type[T], argv: list[str] | None, description: str) -> T:
    parser = argparse.ArgumentParser(description=description)
    _add_fields(parser, cls)
    args = parser.parse_args(argv)
    try:
        return _build(cls, vars(args))
    except ValueError as err:
        parser.error(str(err))
