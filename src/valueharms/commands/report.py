"""``valueharms report``: the HTML and Markdown report of a run directory."""
from __future__ import annotations

import argparse

from ..report import build_report
from .metrics import add_analysis_options, check, user_profiles


def register(sub) -> None:
    parser = sub.add_parser("report", help="HTML/Markdown report from score files or metrics")
    parser.add_argument("--in", dest="source", required=True,
                        help="a directory with metrics.parquet/.csv (from `valueharms metrics`) "
                             "or with *.jsonl score files (searched recursively)")
    parser.add_argument("--out", required=True, help="directory for index.html and report.md")
    parser.add_argument("--measured", nargs="*", default=None,
                        help="CSV(s) of measured profiles (name,<10 values>); default: every "
                             "measured_profiles.csv under --in")
    add_analysis_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check(args)
    path = build_report(args.source, args.out, baseline=args.baseline, data_dir=args.data_dir,
                        measured=args.measured, profiles=user_profiles(args),
                        resamples=args.resamples, seed=args.seed)
    print(path)
    return 0
