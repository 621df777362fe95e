"""User-facing errors.

Anything a user can get wrong (a config key, a CSV, a budget, a tracking URI) raises
:class:`UserError` with one line that says what is wrong and how to fix it. Entry points
(``scaling`` CLI, ``python -m scaling.train``, ``python -m scaling.sweep``) catch it, print the
line to stderr and exit with status 2 -- no traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

EXIT_USER_ERROR = 2

T = TypeVar("T")


class UserError(ValueError):
    """A mistake in the user's input; the message is shown as a single line."""


class ConfigError(UserError):
    """An invalid configuration value; the message names the offending key."""


class DataError(UserError):
    """A data file or table that cannot be used."""


class TrackingError(UserError):
    """The tracking store cannot be reached or used."""


def exit_on_user_error(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn``; on :class:`UserError` print ``error: <message>`` and exit 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            msg = " ".join(str(err).split())
            print(f"error: {msg}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None

    return wrapper
