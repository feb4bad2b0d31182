"""``valueharms metrics``: score files -> the metrics table and the analysis tables."""
from __future__ import annotations

import argparse
import sys

from .. import analyze
from ..analyze import bias
from ..config import MetricsOptions
from . import add_data_dir, add_options, options_from


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    add_options(parser, MetricsOptions)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--profiles", default=None,
                        help="CSV/JSON/TOML of your own target profiles (for the correlations)")
    add_data_dir(parser)


def user_profiles(args: argparse.Namespace):
    from ..targets import read_profiles

    return read_profiles(args.profiles) if args.profiles else None


def register(sub) -> None:
    parser = sub.add_parser("metrics", help="metrics and analysis tables from score files")
    parser.add_argument("--in", dest="inputs", nargs="+", required=True,
                        help="score files or directories searched recursively for *.jsonl")
    parser.add_argument("--out", required=True, help="directory for the tables")
    add_analysis_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    options = options_from(args, MetricsOptions)
    profiles = user_profiles(args)
    if options.baseline == "0.5":
        print(f"note: {bias.PARITY_NOTE}", file=sys.stderr)
    run = analyze.run_metrics(args.inputs, args.out, options, seed=args.seed,
                              data_dir=args.data_dir, profiles=profiles)
    table = run.analysis.metrics
    print(f"{run.n_scores} scores, {table['system'].nunique()} systems, {len(table)} metric rows "
          f"-> {len(run.written)} files in {args.out}")
    if run.analysis.missing_targets:
        print(f"note: no profile for target(s) {', '.join(run.analysis.missing_targets)}: left "
              f"out of the correlations (give them with --profiles)", file=sys.stderr)
    return 0
