"""Command-line options generated from config dataclasses, so an option cannot drift from its field.

Each field becomes ``--field-name`` with the dataclass default; :func:`build` turns the parsed
values back into the dataclass. The pack job (``pipelines.pack.cli``) and the runtime
(``runtime.cli``) build their parsers this way. Imports neither pyspark nor torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Collection, Mapping
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


def comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _base_type(hint: Any) -> Any:
    """``X`` for ``X`` or ``X | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _shown(value: Any) -> Any:
    """A default as the command line spells it: an enum's value, a tuple comma-separated."""
    if isinstance(value, Enum):
        return value.value
    return ",".join(value) if isinstance(value, tuple) else value


def add_fields(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "",
               skip: Collection[str] = (), flags: Mapping[str, str] | None = None,
               helps: Mapping[str, str] | None = None, converters: Mapping[str, Callable[[str], Any]] | None = None,
               choices: Mapping[str, Collection[str]] | None = None, negatable: bool = False) -> None:
    """One option per field of ``cls`` but ``skip`` on ``parser`` (or an argument group); nested dataclasses flattened.

    The value lands in ``prefix + name``; ``flags`` renames options, ``helps`` gives their
    texts, ``converters`` parse a value (default: the field's type), ``choices`` restricts it (an
    enum field offers its values). The default follows the help text; a ``None`` default is
    left to the text, which says what happens then. A bool that defaults to False is switched
    on by ``--name``, one that defaults to True off by ``--no-name``; ``negatable`` gives both
    forms to every bool. A tuple is a repeatable option unless a converter parses it from one value.
    """
    flags, helps, converters, choices = flags or {}, helps or {}, converters or {}, choices or {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = _base_type(hints[f.name])
        if dataclasses.is_dataclass(hint):
            add_fields(parser, hint, prefix=prefix, skip=skip, flags=flags, helps=helps, converters=converters,
                       choices=choices, negatable=negatable)
            continue
        flag = flags.get(f.name, "--" + f.name.replace("_", "-"))
        dest = prefix + f.name
        text = helps.get(f.name, "")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if hint is bool:
            if negatable:
                parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                                    help=text or None)
            elif default:
                parser.add_argument("--no-" + flag[2:], dest=dest, action="store_false",
                                    help=f"do not {text}" if text else None)
            else:
                parser.add_argument(flag, dest=dest, action="store_true", help=text)
            continue
        if required or (default is None and text):
            help_text = text or None
        else:
            help_text = f"{text} (default: {_shown(default)})" if text else f"default: {_shown(default)}"
        options: dict[str, Any] = {"dest": dest, "metavar": f.name.upper(), "required": required}
        if isinstance(hint, type) and issubclass(hint, Enum):
            options.update(type=str, choices=[m.value for m in hint])
            default = _shown(default)
        elif f.name in converters:
            options["type"] = converters[f.name]
        elif typing.get_origin(hint) is tuple:
            parser.add_argument(flag, action="append", type=typing.get_args(hint)[0], help=f"{text} (repeatable)" if text else "repeatable",
                                **options)
            continue
        else:
            options["type"] = hint
        if f.name in choices:
            options["choices"] = choices[f.name]
        parser.add_argument(flag, default=default, help=help_text, **options)


def build(cls: type[T], values: Mapping[str, Any], prefix: str = "", **given: Any) -> T:
    """``cls`` from the ``values`` :func:`add_fields` parsed (at ``prefix + name``), and the fields ``given``."""
    hints = typing.get_type_hints(cls)
    kwargs = dict(given)
    for f in dataclasses.fields(cls):
        if f.name in given:
            continue
        hint = _base_type(hints[f.name])
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = build(hint, values, prefix)
        elif typing.get_origin(hint) is tuple:
            kwargs[f.name] = tuple(values[prefix + f.name] or ())
        else:
            kwargs[f.name] = values[prefix + f.name]
    return cls(**kwargs)
