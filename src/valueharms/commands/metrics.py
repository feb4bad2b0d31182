"""``valueharms metrics``: score files -> the metrics table and the analysis tables."""
from __future__ import annotations

import argparse
import sys

from .. import analyze
from ..analyze import bias
from ..config import MetricsOptions
from . import add_data_dir, options_from


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


def check(args: argparse.Namespace) -> MetricsOptions:
    """The --baseline and --resamples options, checked."""
    return options_from(args, MetricsOptions)


def register(sub) -> None:
    parser = sub.add_parser("metrics", help="metrics and analysis tables from score files")
    parser.add_argument("--in", dest="inputs", nargs="+", required=True,
                        help="score files or directories searched recursively for *.jsonl")
    parser.add_argument("--out", required=True, help="directory for the tables")
    add_analysis_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    options = check(args)
    done = analyze.run_metrics(args.inputs, args.out, options, seed=args.seed,
                               data_dir=args.data_dir, profiles=user_profiles(args))
    if "0.5" in bias.check_baselines(options.baseline):
        print(f"note: {bias.PARITY_NOTE}", file=sys.stderr)
    table = done.analysis.metrics
    print(f"{done.n_scores} scores, {table['system'].nunique()} systems, {len(table)} metric rows "
          f"-> {len(done.written)} files in {args.out}")
    if done.analysis.missing_targets:
        print(f"note: no profile for target(s) {', '.join(done.analysis.missing_targets)}: left "
              f"out of the correlations (give them with --profiles)", file=sys.stderr)
    return 0
