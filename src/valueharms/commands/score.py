"""``valueharms score``: score a generations file with one scorer, resumably and cached."""
from __future__ import annotations

import logging
import sys

from ..errors import InputError
from . import positive

# CLI option -> the scorer option it sets (only options the user gave are passed on).
_OPTIONS = {"perspective_url": "perspective_url", "attributes": "attributes",
            "languages": "languages", "regard_model": "model", "base_url": "base_url",
            "judge_model": "judge_model", "attempts": "attempts", "backoff": "backoff",
            "max_backoff": "max_backoff", "timeout": "timeout", "qps": "qps",
            "concurrency": "concurrency", "batch_size": "batch_size", "device": "device",
            "rubric": "rubric", "max_tokens": "max_tokens", "span": "span", "yes_no": "yes_no"}


def register(sub) -> None:
    from .. import score

    p = sub.add_parser("score", help="score generations (toxicity, regard, judges) into a JSONL",
                       description="Score every generation of --in with one scorer and append "
                                   "the results to --out; a re-run skips what is done.")
    p.add_argument("--scorer", required=True,
                   help=f"one of {', '.join(score.names())}")
    p.add_argument("--in", dest="in_path", required=True, help="generations JSONL")
    p.add_argument("--out", required=True, help="scores JSONL (appended, resumable)")
    p.add_argument("--cache", default=None,
                   help="SQLite cache file (default $VALUEHARMS_CACHE/scores.sqlite)")
    p.add_argument("--retry-unparsed", action="store_true",
                   help="ask again for items whose judge reply could not be parsed")
    p.add_argument("--retry-failed", action="store_true",
                   help="ask again for items whose calls failed")
    g = p.add_argument_group("perspective")
    g.add_argument("--perspective-url", help="endpoint (default: Google's comments:analyze)")
    g.add_argument("--attributes", help="comma-separated, e.g. TOXICITY,SEVERE_TOXICITY "
                                        "(default TOXICITY; the first gives the value)")
    g.add_argument("--languages", help="comma-separated language codes to declare (default: "
                                       "detected by the API)")
    g = p.add_argument_group("models and judges")
    g.add_argument("--regard-model", help="text-classification model id or path "
                                          "(default sasha/regardv3)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint (default api.openai.com)")
    g.add_argument("--judge-model", help="judge model name (remote) or id/path (:local)")
    g.add_argument("--rubric", metavar="FILE",
                   help="judges: your rubric template instead of ours, with {instruction} and "
                        "{response} placeholders (e.g. Qi et al.'s HEx-PHI rubric; replies in "
                        "'#thescore: N' form are read); the file name joins the scorer's name")
    g.add_argument("--max-tokens", type=positive(int),
                   help="remote judges: longest reply (default 1024, room for reasoning)")
    g.add_argument("--span", metavar="SPAN",
                   help="toxicity and regard scorers: what is scored: continuation (toxicity "
                        "default), first-sentence, prompt+first-sentence (regard default, "
                        "ROBBIE's sentence) or prompt+continuation")
    g.add_argument("--yes-no", action="store_true", default=None,
                   help="judge-offline: add the embedded SmolLM2 asked Yes/No whether the "
                        "answer gave what was asked (slower; see docs/scorers.md)")
    g.add_argument("--batch-size", type=positive(int), help="items per local model batch")
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... for local models")
    g = p.add_argument_group("remote calls")
    g.add_argument("--qps", type=positive(float, zero=True),
                   help="requests per second, all threads (perspective 1, judges 5)")
    g.add_argument("--concurrency", type=positive(int), help="requests in flight")
    g.add_argument("--attempts", type=positive(int), help="tries per item before 'failed'")
    g.add_argument("--backoff", type=positive(float, zero=True),
                   help="first retry wait in seconds, doubled each retry")
    g.add_argument("--max-backoff", type=positive(float, zero=True), help="longest wait")
    g.add_argument("--timeout", type=positive(float), help="seconds per request")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="log every retry")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..score import deprecation, scorer_options
    from ..score.run import run_scorer

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "openai", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = {opt: getattr(args, name) for name, opt in _OPTIONS.items()
               if getattr(args, name) is not None}
    accepted = set(scorer_options(args.scorer))
    for name, opt in _OPTIONS.items():
        if opt in options and opt not in accepted:
            raise InputError(f"--{name.replace('_', '-')}: does not apply to --scorer {args.scorer}")
    retry = tuple(s for s, on in (("unparsed", args.retry_unparsed), ("failed", args.retry_failed))
                  if on)
    summary = run_scorer(args.in_path, args.out, args.scorer, options, cache_path=args.cache,
                         retry=retry, progress=not args.no_progress)
    print(summary.line(), file=sys.stderr)
    note = deprecation(args.scorer)
    if note:  # after the work, so an error stays the only line
        print(f"note: {note}", file=sys.stderr)
    return 0
