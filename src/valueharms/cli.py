"""The ``valueharms`` command line. Each module in ``valueharms.commands`` adds its subcommands."""
from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys

from . import commands
from .errors import InputError

# Failures of the machine rather than the program: a full disk or quota, a file-size limit,
# a read-only or forbidden folder. One line and exit 2 like bad input; every writer keeps
# unfinished work out of the files that mark work done, so a re-run redoes only that.
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command's subcommands."""
    parser = _Parser(prog="valueharms", description="Align language models to value profiles "
                     "and audit what that does to their safety.")
    parser.add_argument("--version", action="version", version=f"valueharms {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def version() -> str:
    """The installed package's version (the source tree's when not installed)."""
    from importlib import metadata

    try:
        return metadata.version("valueharms")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit code (2: bad input, said in one line)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (already said, one line), --help or --version
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        sys.stderr.write(f"valueharms: error: {exc}\n")
        return 2
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"valueharms: error: {where}{exc.strerror}; nothing unfinished was "
                         f"kept as done: fix this and run again\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
