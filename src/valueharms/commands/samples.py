"""``valueharms samples RUN_DIR --out FILE``: the flat per-sample table of a run."""
from __future__ import annotations

import argparse

from ..analyze.samples import FORMATS, check_out, samples_table, write_samples
from . import add_data_dir
from .metrics import user_profiles


def register(sub) -> None:
    parser = sub.add_parser("samples", help="one row per scored sample (prompt, answer, verdict)",
                            description="Join a run's score files with their generations and "
                                        "the systems' target values: one row per (system, "
                                        "benchmark, prompt, sample, scorer).")
    parser.add_argument("run_dir", help="a run directory (searched recursively for the score "
                                        "and generation *.jsonl files), e.g. runs/demo")
    parser.add_argument("--out", required=True,
                        help=f"output file; the format follows the extension: {', '.join(FORMATS)}")
    parser.add_argument("--profiles", default=None,
                        help="CSV/JSON/TOML of your own target profiles (for the target values)")
    add_data_dir(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_out(args.out)
    frame = samples_table(args.run_dir, args.data_dir, user_profiles(args))
    path = write_samples(frame, args.out)
    print(f"{len(frame)} rows -> {path}")
    return 0
