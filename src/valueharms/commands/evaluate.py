"""``valueharms evaluate alignment``: how close a system's survey answers are to its target."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..align.check import INSTRUMENTS, METHODS
from ..errors import InputError
from . import add_data_dir, add_model_args, add_subcommands, model_options, positive


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="checks of an aligned model")
    checks = add_subcommands(p, "check")
    a = checks.add_parser("alignment", help="questionnaire answers -> measured profile, "
                                            "compared with the target (NMSE, r, rho)")
    a.add_argument("--model", default=None, help="Hugging Face id or path (default: the embedded "
                                                 "model)")
    how = a.add_mutually_exclusive_group()
    how.add_argument("--adapter", default=None, metavar="PATH_OR_HUB_ID",
                     help="a LoRA folder (e.g. the stage2/ of `train vim`) or a Hugging Face "
                          "Hub id org/name[@revision], downloaded on first use")
    how.add_argument("--prompting", default=None, metavar="TARGET",
                     help="state this target's profile in the prompt instead (the ICL baseline)")
    a.add_argument("--target", default=None, metavar="NAME[,NAME...]",
                   help="the profile(s) to compare with, one alignment.csv row each (default: "
                        "the --prompting target); with --instrument arguments the first is the "
                        "adapter's training target, whose stage-1 arguments are left out")
    a.add_argument("--profiles", default=None, metavar="FILE",
                   help="your own profiles (.csv/.json/.toml) to look targets up in")
    a.add_argument("--instrument", default="pvq40", metavar="|".join(INSTRUMENTS) + "|FILE",
                   help="pvq40: the 40 PVQ portraits (the paper's instrument); arguments: "
                        "held-out arguments not in the target's stage-1 train/valid split, one "
                        "question per annotated value; FILE: your questionnaire (item,value,"
                        "text) (default: pvq40)")
    a.add_argument("--method", choices=METHODS, default="generate",
                   help="generate: parse the number from a greedy reply (unclear replies are "
                        "counted, not guessed); likelihood: the likeliest of the tokens 1-6; "
                        "expected: their probability-weighted mean (default: generate)")
    a.add_argument("--limit", type=positive(), default=None,
                   help="only the first N items (arguments: N arguments)")
    a.add_argument("--train-limit", type=positive(), default=None,
                   help="arguments: the --limit the adapter was trained with (its stage-1 "
                        "slice is left out too)")
    a.add_argument("--batch-size", type=positive(), default=8)
    a.add_argument("--form", choices=("auto", "chat", "base"), default="auto")
    a.add_argument("--device", default=None)
    add_model_args(a)
    a.add_argument("--out", default=None, metavar="DIR",
                   help="write alignment.csv, measured_profiles.csv and answers.jsonl here")
    add_data_dir(a)
    a.set_defaults(func=_alignment)


def _alignment(args: argparse.Namespace) -> int:
    from .. import models, targets
    from ..align import check
    from ..generate import make_backend

    if not (args.target or args.prompting):
        raise InputError("--target: name the profile to compare with")
    model, model_args = model_options(args)
    adapter = models.fetch_adapter(args.adapter) if args.adapter else None
    extra = targets.read_profiles(args.profiles) if args.profiles else []
    names = [n for n in (args.target or args.prompting).split(",") if n]
    compared = [targets.find(n, args.data_dir, extra) for n in names]
    persona = targets.find(args.prompting, args.data_dir, extra) if args.prompting else None
    label = Path(args.adapter.partition("@")[0]).name if args.adapter else None
    subject = check.Subject(f"prompt:{persona.name}" if persona else
                            f"adapter:{label}" if adapter else "vanilla",
                            adapter=adapter, persona=persona)
    # Bad instrument files fail here, before the model loads.
    check.instrument_items(args.instrument, compared[0], args.data_dir, args.limit,
                           args.train_limit)
    backend = make_backend("hf", model, batch_size=args.batch_size, device=args.device,
                           form=args.form, model_args=model_args)
    if adapter:
        backend.load_adapters([adapter])
    result = check.run_check(backend, [subject], compared, instrument=args.instrument,
                             method=args.method, data_dir=args.data_dir, limit=args.limit,
                             train_limit=args.train_limit, form=args.form,
                             trained_on={subject.key: compared[0]} if adapter else None)
    print("\n\n".join(check.describe(row) for row in result.rows))
    if args.out:
        check.write(result, args.out)
        print(f"wrote {args.out}/alignment.csv, measured_profiles.csv, answers.jsonl")
    return 0
