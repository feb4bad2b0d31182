"""``valueharms data``: write training data to files a person can open (VIM stages 1 and 2)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import targets
from ..errors import InputError
from ..io import atomic_dir, atomic_write_text
from . import add_data_dir, add_subcommands


def register(sub) -> None:
    parser = sub.add_parser("data", help="build training data (vim)")
    cmds = add_subcommands(parser, "data_command")

    p = cmds.add_parser("vim", help="VIM stage-1 and stage-2 examples for target profiles")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--target", help="one profile name (see `valueharms targets list`)")
    who.add_argument("--set", dest="profile_set",
                     help="every profile of a set (paper, extremes, reverse, countries, or a "
                          ".csv/.json/.toml file): one folder OUT/<name>/ each")
    p.add_argument("--threshold", type=float, default=3,
                   help="an argument scoring at least this is positive (default 3)")
    p.add_argument("--strategy", default="min",
                   help="how an argument's values combine into its score: min, mean or max "
                        "(default min)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit", type=int, default=None,
                   help="keep N arguments per stage (quick runs; see valueharms.align.vim_data)")
    p.add_argument("--out", required=True, help="output directory")
    add_data_dir(p)
    p.set_defaults(func=_vim)


def _vim(args: argparse.Namespace) -> int:
    from ..align import vim_data

    vim_data.check_options(args.threshold, args.strategy, args.limit)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    if args.target is not None:
        profiles = [targets.find(args.target, args.data_dir)]
    else:
        profiles = targets.load_set(args.profile_set, args.data_dir)
        for p in profiles:
            if not p.name or p.name in (".", "..") or "/" in p.name or "\\" in p.name:
                raise InputError(f"--set {args.profile_set}: profile name {p.name!r} "
                                 f"cannot be a folder name")
    # read and check every input before any output exists
    stage1 = vim_data.build_stage1_many(
        profiles, vim_data.read_stage1_arguments(args.data_dir), threshold=args.threshold,
        strategy=args.strategy, seed=args.seed, limit=args.limit)
    items = vim_data.survey_items(args.data_dir, args.limit)
    options = {"threshold": args.threshold, "strategy": args.strategy, "seed": args.seed,
               "limit": args.limit}

    def write(root: Path) -> None:
        for table in stage1:
            folder = root if args.target is not None else root / table.profile.name
            notes = table.warnings(args.threshold, args.strategy)
            for note in notes:
                sys.stderr.write(f"note: {note}\n")
            _write_profile(folder, table, vim_data.build_stage2(table.profile, items, args.seed),
                           options, notes)

    if out.exists():  # keep what else is in the folder; each file is still replaced atomically
        write(out)
    else:
        with atomic_dir(out) as tmp:
            write(tmp)
    print(f"{len(profiles)} profile(s) -> {out}")
    return 0


def _write_profile(folder: Path, stage1, stage2, options: dict, notes: list[str]) -> None:
    counts = stage1.counts()
    n2 = {split: stage2.items.splits.count(split) for split in ("train", "valid")}
    atomic_write_text(folder / "stage1.jsonl", stage1.jsonl())
    atomic_write_text(folder / "stage2.jsonl", stage2.jsonl())
    atomic_write_text(folder / "manifest.json", json.dumps({
        "target": stage1.profile.name, "profile": stage1.profile.as_dict(), **options,
        "stage1": counts, "stage2": n2, "warnings": notes}, indent=1))
    print(f"{stage1.profile.name}: stage 1 "
          + ", ".join(f"{pol} {'/'.join(str(c[s]) for s in ('train', 'valid', 'test'))}"
                      for pol, c in counts.items())
          + f" (train/valid/test); stage 2 {n2['train']}/{n2['valid']} (train/valid)")
