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
