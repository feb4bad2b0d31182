"""``valueharms data``: write training data to files a person can open (VIM stages 1 and 2)."""
from __future__ import annotations

import argparse
import sys

from .. import targets
from ..config import VimDataOptions
from . import add_data_dir, add_options, add_subcommands, options_from


def register(sub) -> None:
    parser = sub.add_parser("data", help="get the data sets (fetch, list); build training data "
                                         "(vim)")
    cmds = add_subcommands(parser, "data_command")

    p = cmds.add_parser("fetch", help="download data sets from their public sources into the "
                                      "cache, checking each checksum")
    p.add_argument("names", nargs="*", metavar="NAME", help="data sets (see `valueharms data "
                                                            "list`)")
    p.add_argument("--all", action="store_true", help="every data set that has a public source")
    p.add_argument("--force", action="store_true", help="download even when a good copy exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_dir(p)
    p.set_defaults(func=_fetch)

    p = cmds.add_parser("list", help="each data set: where it was found, whether its checksum "
                                     "matches, where it comes from")
    add_data_dir(p)
    p.set_defaults(func=_list)

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


def _fetch(args: argparse.Namespace) -> int:
    from .. import fetch
    from ..errors import InputError
    from ..sources import DATASETS

    if bool(args.names) == args.all:
        raise InputError("data fetch: name the data sets or give --all")
    names = args.names
    if args.all:
        names = [k for k, ds in DATASETS.items() if ds.fetchable]
        for key in sorted(set(DATASETS) - set(names)):
            print(f"note: {key}: no public source to fetch from ({DATASETS[key].no_source})",
                  file=sys.stderr)
    for key, path in zip(names, fetch.fetch(names, force=args.force,
                                            progress=not args.no_progress,
                                            data_dir=args.data_dir)):
        print(f"{key}: {path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .. import fetch
    from ..sources import DATASETS

    print(f"{'data set':38} {'checksum':9} found at / fetched from")
    for key, ds in DATASETS.items():
        found = fetch.find(key, args.data_dir)
        print(found.line(fetch.where_from(ds)))
        if found.path and not ds.fetchable:  # found, but a new user could not fetch it
            print(f"{'':48} (no public source: {ds.no_source})")
    return 0


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
