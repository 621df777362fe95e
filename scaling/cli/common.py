"""What every ``scaling`` subcommand's parser shares: the parser class whose errors are one
line, the argparse types of numbers, and the rewrite that lets a number option take a negative
value (so the user gets the command's own error instead of a usage dump)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Collection, Sequence
from typing import NoReturn, TypeAlias

# What ``ArgumentParser.add_subparsers`` returns: each command module adds its parsers to it.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Parser(argparse.ArgumentParser):
    """A bad option is one line (what is wrong, where the usage is) and exit status 2, not the
    usage block followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def number(text: str) -> float:
    """An argparse type: any float (the command checks its range, in one line)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e21, got {text!r}") from None


def or_auto(parse: Callable[[str], float], kind: str) -> Callable[[str], float | str]:
    """An argparse type: ``auto``, else ``parse(text)``; one line naming ``kind`` otherwise."""

    def convert(text: str) -> float | str:
        if text.strip().lower() == "auto":
            return "auto"
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind} or auto, got {text!r}") from None

    return convert


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def attach_negative_numbers(argv: Sequence[str], options: Collection[str]) -> list[str]:
    """``argv`` with ``--flops -1e20`` (``--flops`` one of ``options``) as ``--flops=-1e20``.

    argparse reads "-1e20" as an option name, so ``--flops -1e20`` would end in a usage dump;
    attached, the value reaches the command, whose check says in one line that it must be
    positive."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in options and _NEGATIVE_NUMBER.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out
