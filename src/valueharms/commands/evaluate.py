"""``valueharms evaluate alignment``: how close a system's survey answers are to its target."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import CheckOptions
from ..errors import InputError
from . import add_data_dir, add_model_args, add_options, add_subcommands, model_options, options_from


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
    add_options(a, CheckOptions, title="the check (the study's alignment step)")
    add_model_args(a)
    a.add_argument("--out", default=None, metavar="DIR",
                   help="write alignment.csv, measured_profiles.csv and answers.jsonl here")
    add_data_dir(a)
    a.set_defaults(func=_alignment)


def _alignment(args: argparse.Namespace) -> int:
    from .. import models, targets
    from ..align import check

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
    result = check.run_alignment(model, [subject], compared, options_from(args, CheckOptions),
                                 model_args=model_args, data_dir=args.data_dir, out=args.out,
                                 trained_on={subject.key: compared[0]} if adapter else None)
    print("\n\n".join(check.describe(row) for row in result.rows))
    if args.out:
        print(f"wrote {args.out}/alignment.csv, measured_profiles.csv, answers.jsonl")
    return 0
