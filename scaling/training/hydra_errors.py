"""Hydra's own config errors as one ``error:`` line and exit status 2, like any bad input.

Used by every entry point that composes a config with Hydra: ``python -m scaling.train``,
``python -m scaling.sweep`` (and its grid validation) and ``scaling process``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields

from scaling.config import GROUPS, TOP_LEVEL_KEYS, fields_at, unknown_key_message
from scaling.errors import EXIT_USER_ERROR


@contextmanager
def hydra_config_errors() -> Iterator[None]:
    """Hydra's own config errors as one ``error:`` line and exit status 2, like any bad input.

    An unknown key (``model.foo=1``), a missing option (``data=nope``) or an override Hydra cannot
    parse is rejected while Hydra composes the config, before the task runs; Hydra would print it
    over several lines and exit 1. With ``HYDRA_FULL_ERROR=1`` it raises instead, and the error is
    caught here; any other exception propagates with its traceback (exit status 1). A user who
    set ``HYDRA_FULL_ERROR=1`` keeps Hydra's full traceback for everything.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (HydraException, OmegaConfBaseException) as err:
        if before == "1":
            raise
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def hydra_error_line(err: BaseException) -> str:
    """One line for a Hydra composition error: an unknown key names the known ones (as
    :func:`scaling.config.structured` does), other errors are joined onto one line."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = err.__cause__
    key = str(getattr(cause, "full_key", "") or "")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        group = key.split(".")[0]
        if group in GROUPS and "." in key:
            owner, _ = fields_at(GROUPS[group], key.split(".", 1)[1])
            return unknown_key_message(key, [f.name for f in fields(owner)])
        if "." not in key:
            return unknown_key_message(key, [*TOP_LEVEL_KEYS, *GROUPS])
    text = str(err).split("Config search path:")[0]
    text = text.replace(":\n\t", ": ").replace("\n\t", ", ")
    lines = [line.strip().rstrip(".") for line in text.splitlines() if line.strip()]
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0].rstrip("."))
    return "; ".join(lines) or type(err).__name__
