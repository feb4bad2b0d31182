"""``valueharms data``: write training data to files a person can open (VIM stages 1 and 2)."""
from __future__ import annotations

import argparse
import sys

from .. import targets
from ..config import VimDataOptions
from . import add_data_dir, add_options, add_subcommands, options_from


def register(sub) -> None:
    parser = sub.add_parser("data", help="build training data (vim)")
    cmds = add_subcommands(parser, "data_command")

    p = cmds.add_parser("vim", help="VIM stage-1 and stage-2 examples for target profiles")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--target", help="one profile name (see `valueharms targets list`)")
    who.add_argument("--set", dest="profile_set",
                     help="every profile of a set (paper, extremes, reverse, countries, or a "
                          ".csv/.json/.toml file): one folder OUT/<name>/ each")
    add_options(p, VimDataOptions)
    p.add_argument("--seed", type=int, default=42, help="split and order seed (default: 42)")
    p.add_argument("--out", required=True, help="output directory")
    add_data_dir(p)
    p.set_defaults(func=_vim)


def _vim(args: argparse.Namespace) -> int:
    from ..align.vim_write import write_datasets

    options = options_from(args, VimDataOptions)
    if args.target is not None:
        profiles = [targets.find(args.target, args.data_dir)]
    else:
        profiles = targets.load_set(args.profile_set, args.data_dir)
    written = write_datasets(profiles, args.out, options, seed=args.seed,
                             data_dir=args.data_dir, one_folder=args.target is not None,
                             say=lambda note: print(f"note: {note}", file=sys.stderr))
    for w in written:
        print(w.line())
    print(f"{len(profiles)} profile(s) -> {args.out}")
    return 0
