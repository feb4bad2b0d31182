"""``valueharms report``: the HTML and Markdown report of a run directory."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..analyze.samples import samples_table
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
    source = Path(args.source)
    scores = source.is_dir() and not any((source / name).is_file()
                                         for name in ("metrics.parquet", "metrics.csv"))
    # From score files, the report also gets the per-sample table (samples.parquet beside it).
    profiles = user_profiles(args)
    samples = samples_table(source, args.data_dir, profiles) if scores else None
    path = build_report(args.source, args.out, baseline=args.baseline, data_dir=args.data_dir,
                        measured=args.measured, profiles=profiles,
                        resamples=args.resamples, seed=args.seed, samples=samples)
    print(path)
    return 0
