"""User-facing errors.

Anything a user can get wrong (a config key, a CSV, a budget, a tracking URI) raises
:class:`UserError` with one line that says what is wrong and how to fix it. Entry points
(``scaling`` CLI, ``python -m scaling.train``, ``python -m scaling.sweep``) catch it, print the
line to stderr and exit with status 2 -- no traceback.  :class:`UnhealthyFitError` (a fit that
cannot support a prediction) exits with status 3 instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

EXIT_USER_ERROR = 2
EXIT_UNHEALTHY_FIT = 3
# A process stopped by a signal exits as the shell reports one killed by it: 128 + the signal.
EXIT_SIGINT = 130  # Ctrl-C
EXIT_SIGTERM = 143  # kill, SLURM's time limit
SIGNAL_EXIT = {"SIGINT": EXIT_SIGINT, "SIGTERM": EXIT_SIGTERM}

T = TypeVar("T")


class UserError(ValueError):
    """A mistake in the user's input; the message is shown as a single line."""

    exit_code = EXIT_USER_ERROR


class ConfigError(UserError):
    """An invalid configuration value; the message names the offending key."""


class DataError(UserError):
    """A data file or table that cannot be used."""


class TrackingError(UserError):
    """The tracking store cannot be reached or used."""


class UnhealthyFitError(UserError):
    """A fit whose health verdict says it cannot support a prediction."""

    exit_code = EXIT_UNHEALTHY_FIT


def exit_status(err: SystemExit) -> int:
    """The status a process ending with ``err`` exits with (Python's rule: None is 0, an int is
    itself, anything else is 1)."""
    if err.code is None:
        return 0
    return err.code if isinstance(err.code, int) else 1


def exit_on_user_error(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn``; on :class:`UserError` print ``error: <message>`` and exit with its code."""

    @wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            msg = " ".join(str(err).split())
            print(f"error: {msg}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None

    return wrapper
