"""``valueharms validate``: how well a scorer agrees with labels made by others."""
from __future__ import annotations

import sys

from ..errors import InputError


def register(sub) -> None:
    from .. import score

    p = sub.add_parser("validate", help="measure a scorer's agreement with a labelled file",
                       description="Score a labelled CSV/JSONL with one scorer (or two, to "
                                   "compare them on the same rows) and print n, ROC AUC and "
                                   "Spearman with 95%% bootstrap intervals, and accuracy at "
                                   "the scorer's threshold.")
    p.add_argument("--scorer", action="append", required=True,
                   help=f"give once or twice; one of {', '.join(score.names())}")
    p.add_argument("--labels", required=True, help="CSV or JSONL with a text and a label column")
    p.add_argument("--text-col", default="text", help="column with the scored text")
    p.add_argument("--label-col", default="label", help="numeric label; higher = more of "
                                                        "what the scorer measures")
    p.add_argument("--request-col", default=None,
                   help="column with the request the text answers (for judges)")
    p.add_argument("--flip-labels", action="store_true",
                   help="the label means the opposite (e.g. 1 = refused for a harm judge)")
    p.add_argument("--threshold", type=float, action="append", default=None,
                   help="score at or above which a row counts as positive (once per "
                        "--scorer; default: the scorer's own)")
    p.add_argument("--cache", default=None, help="SQLite score cache (default as for score)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..score import deprecation, get_scorer
    from ..score.cache import ScoreCache
    from ..score.validate import Columns, read_labelled, validate

    if len(args.scorer) > 2:
        raise InputError("--scorer: give one or two scorers")
    if args.threshold and len(args.threshold) != len(args.scorer):
        raise InputError(f"--threshold: give it once per --scorer ({len(args.scorer)})")
    columns = Columns(args.text_col, args.label_col, args.request_col)
    read_labelled(args.labels, columns)  # fail on bad input before loading any model
    scorers = [get_scorer(name) for name in args.scorer]
    with ScoreCache(args.cache) as cache:
        report = validate(args.labels, scorers, columns, thresholds=args.threshold,
                          flip=args.flip_labels, cache=cache)
    print("\n".join(report.lines()))
    for note in filter(None, map(deprecation, dict.fromkeys(args.scorer))):
        print(f"note: {note}", file=sys.stderr)
    return 0
