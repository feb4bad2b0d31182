"""``valueharms metrics``: score files -> the metrics table and the analysis tables."""
from __future__ import annotations

import argparse
import sys

from .. import analyze
from ..analyze import bias
from ..analyze.metrics import load_scores, measure
from ..errors import InputError
from . import add_data_dir


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", choices=bias.BASELINES, action="append", default=None,
                        help="bias-score baseline, in percent like the groups' statistic: "
                             "background = the model's overall negative-regard percentage "
                             "(default); 0.5 = 0.5 %%, the reference's behaviour, for parity; "
                             "repeat for both")
    parser.add_argument("--resamples", type=int, default=bias.RESAMPLES,
                        help="bootstrap resamples per group (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profiles", default=None,
                        help="CSV/JSON/TOML of your own target profiles (for the correlations)")
    add_data_dir(parser)


def user_profiles(args: argparse.Namespace):
    from ..targets import read_profiles

    return read_profiles(args.profiles) if args.profiles else None


def check(args: argparse.Namespace) -> None:
    if args.resamples < 100:
        raise InputError(f"--resamples {args.resamples}: use at least 100")


def register(sub) -> None:
    parser = sub.add_parser("metrics", help="metrics and analysis tables from score files")
    parser.add_argument("--in", dest="inputs", nargs="+", required=True,
                        help="score files or directories searched recursively for *.jsonl")
    parser.add_argument("--out", required=True, help="directory for the tables")
    add_analysis_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check(args)
    profiles = user_profiles(args)
    scores = load_scores(args.inputs)
    if "0.5" in bias.check_baselines(args.baseline):
        print(f"note: {bias.PARITY_NOTE}", file=sys.stderr)
    found = measure(scores, args.baseline, resamples=args.resamples, seed=args.seed)
    table = found.table
    result = analyze.analyse(table, args.data_dir, profiles, found.units, args.seed)
    written = analyze.write(result, args.out)
    print(f"{len(scores)} scores, {table['system'].nunique()} systems, {len(table)} metric rows "
          f"-> {len(written)} files in {args.out}")
    if result.missing_targets:
        print(f"note: no profile for target(s) {', '.join(result.missing_targets)}: left out of "
              f"the correlations (give them with --profiles)", file=sys.stderr)
    return 0
