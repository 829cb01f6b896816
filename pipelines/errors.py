"""Errors the user can fix: one ``error:`` line on stderr and exit status 2, never a traceback.

Every whole-input or argument problem raises a :class:`UserError` (the input's, the output's,
the tokenizer's, an option's), preferably before Spark starts; ``pipelines.cli.run_job`` maps
them all to exit 2 in one place. Anything else is a bug or an infrastructure failure and keeps
its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A problem with the command as given; the message says what and, where it can, how to fix it."""

    exit_code = 2


class UsageError(UserError, ValueError):
    """An option's value, or a combination of options, that cannot work."""


class InputError(UserError, ValueError):
    """The input as a whole cannot be processed; the message says why and what exists."""


def one_line(message: object) -> str:
    """``message`` on one line (an error quoting a multi-line cause must not look like several)."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def alternatives(values: Iterable[str]) -> str:
    """``a, b or c``: the allowed values of an option, for a message."""
    *rest, last = values
    return f"{', '.join(rest)} or {last}" if rest else last
