"""Errors that end a job with one ``error:`` line on stderr and their exit status, never a traceback.

Every whole-input or argument problem raises a :class:`UserError` (the input's, the output's,
the tokenizer's, an option's), preferably before Spark starts: exit 2. A failed stage of the
end-to-end run exits 1 with its root cause. Each class carries its exit status, so
``pipelines.cli.run_job`` maps them all in one place. Anything else is a bug or an
infrastructure failure and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class OneLineError(Exception):
    """Ends the job with ``error: <message>`` on one line and ``exit_code``."""

    exit_code = 1


class UserError(OneLineError):
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
