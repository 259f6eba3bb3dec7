"""Arguments shared by the commands: integers with a lower bound (refused by argparse, status 2) and the
repeatable ``--option KEY=VALUE`` of the model-running commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= low`` (the error names the value and the bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive = int_at_least(1)
non_negative = int_at_least(0)


def add_option_argument(p: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--option KEY=VALUE`` (collected in ``args.options``; read with :func:`parse_options`)."""
    p.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE", help=help)


def parse_options(items: list[str]) -> dict:
    """``["preset=small", "n=3"]`` -> ``{"preset": "small", "n": 3}`` (TOML values, else strings)."""
    import tomllib

    from harmbench.errors import UserError

    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--option {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            out[k.strip()] = v
    return out
