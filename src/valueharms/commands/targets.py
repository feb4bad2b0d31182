"""``valueharms targets``: list, show and derive value profiles."""
from __future__ import annotations

import argparse
import json
import sys

from .. import targets
from ..files import atomic_write_text
from ..values import VALUES
from . import add_data_dir, add_subcommands


def register(sub) -> None:
    parser = sub.add_parser("targets", help="value profiles: list, show, derive")
    cmds = add_subcommands(parser, "targets_command")

    p = cmds.add_parser("list", help="print a set of profiles")
    p.add_argument("--set", default="paper",
                   help="paper, extremes, reverse, countries, or a .csv/.json/.toml file")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    add_data_dir(p)
    p.set_defaults(func=_list)

    p = cmds.add_parser("show", help="one profile's scores (and its ESS respondent)")
    p.add_argument("name")
    add_data_dir(p)
    p.set_defaults(func=_show)

    p = cmds.add_parser("derive", help="rank ESS respondents nearest to each extreme")
    p.add_argument("--ess", required=True,
                   help="raw ESS answers (like ess.csv) or per-respondent profiles "
                        "(like ess_distribution.csv)")
    p.add_argument("--coding", choices=targets.CODINGS, default="raw",
                   help="raw: the paper's (ESS numbers read as importance); "
                        "importance: 7 - raw, psychologically correct")
    p.add_argument("--neighbours", type=int, default=10)
    p.add_argument("--out", required=True, help="CSV file to write")
    p.set_defaults(func=_derive)


def _list(args: argparse.Namespace) -> int:
    profiles = targets.load_set(args.set, args.data_dir)
    if args.format == "csv":
        sys.stdout.write(targets.profiles_csv(profiles))
    elif args.format == "json":
        json.dump([{"name": p.name, **p.as_dict(), **dict(p.meta)} for p in profiles],
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("name", *(v[:4] for v in VALUES), title=f"{args.set}: {len(profiles)} profiles")
        for p in profiles:
            table.add_row(p.name, *(f"{s:.2f}" for s in p.scores))
        Console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    profile = targets.find(args.name, args.data_dir)
    print(profile.name)
    for value, score in profile.as_dict().items():
        print(f"  {value:<15} {score:.4f}")
    for key in ("respondent", "divergence", "extreme", "rank", "source", "coding"):
        if key in profile.meta:
            print(f"  {key}: {profile.meta[key]}")
    return 0


def _derive(args: argparse.Namespace) -> int:
    from ..errors import InputError

    if args.neighbours < 1:
        raise InputError(f"--neighbours {args.neighbours}: must be at least 1")
    pool = targets.respondents(args.ess, args.coding)
    profiles = targets.nearest(pool, args.neighbours)
    atomic_write_text(args.out, targets.profiles_csv(profiles, ("respondent", "divergence")))
    print(f"{len(profiles)} profiles from {len(pool.ids)} respondents ({args.coding} coding) "
          f"-> {args.out}")
    return 0
