"""CLI subcommands: each module defines ``register(subparsers)``.

Shared option helpers live here so every command spells them the same way.
"""
from __future__ import annotations

import argparse


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="directory with the data files (searched before $VALUEHARMS_DATA, "
                             "./data and ../shared/data)")


def add_subcommands(parser: argparse.ArgumentParser, dest: str):
    return parser.add_subparsers(dest=dest, required=True, parser_class=type(parser))


def positive(kind: type = int, zero: bool = False):
    """An argparse type: a number of ``kind`` above 0 (or at least 0 with ``zero``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'>= 0' if zero else '> 0'}")
        return value
    return parse
