"""``valueharms evaluate alignment``: how close a system's survey answers are to its target."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..align.check import METHODS
from ..errors import InputError
from . import add_data_dir, add_subcommands


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="checks of an aligned model")
    checks = add_subcommands(p, "check")
    a = checks.add_parser("alignment", help="survey answers on held-out arguments -> measured "
                                            "profile and NMSE against the target")
    a.add_argument("--model", default=None, help="Hugging Face id or path (default: the embedded "
                                                 "model)")
    how = a.add_mutually_exclusive_group()
    how.add_argument("--adapter", default=None, metavar="DIR",
                     help="a LoRA directory, e.g. the stage2/ of `train vim`")
    how.add_argument("--prompting", default=None, metavar="TARGET",
                     help="state this target's profile in the prompt instead (the ICL baseline)")
    a.add_argument("--target", default=None, help="the profile to compare with (default: the "
                                                  "--prompting target)")
    a.add_argument("--profiles", default=None, metavar="FILE",
                   help="your own profiles (.csv/.json/.toml) to look targets up in")
    a.add_argument("--method", choices=METHODS, default="generate",
                   help="generate: parse the number from a greedy reply (unclear replies are "
                        "counted, not guessed); likelihood: the likeliest of the tokens 1-6")
    a.add_argument("--limit", type=int, default=None, help="only the first N test arguments")
    a.add_argument("--batch-size", type=int, default=8)
    a.add_argument("--form", choices=("auto", "chat", "base"), default="auto")
    a.add_argument("--device", default=None)
    a.add_argument("--out", default=None, metavar="DIR",
                   help="write alignment.csv, measured_profiles.csv and answers.jsonl here")
    add_data_dir(a)
    a.set_defaults(func=_alignment)


def _alignment(args: argparse.Namespace) -> int:
    from .. import targets
    from ..align import check
    from ..generate import make_backend
    from ..io import atomic_write_text, write_jsonl

    if not (args.target or args.prompting):
        raise InputError("--target: name the profile to compare with")
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        raise InputError(f"--adapter {args.adapter}: no adapter_config.json (not a PEFT LoRA "
                         f"directory)")
    extra = targets.read_profiles(args.profiles) if args.profiles else []
    target = targets.find(args.target or args.prompting, args.data_dir, extra)
    persona = targets.find(args.prompting, args.data_dir, extra) if args.prompting else None
    arguments = check.test_arguments(args.data_dir, args.limit)
    system = (f"prompt:{persona.name}" if persona else
              f"adapter:{Path(args.adapter).name}" if args.adapter else "vanilla")
    backend = make_backend("hf", args.model, batch_size=args.batch_size, device=args.device,
                           form=args.form)
    if args.adapter:
        backend.load_adapters([args.adapter])
    result = check.evaluate(backend, system, target, arguments, adapter=args.adapter,
                            persona=persona, form=args.form, method=args.method)
    print(check.describe(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "alignment.csv", check.table_csv([result]))
        atomic_write_text(out / "measured_profiles.csv", check.profiles_csv([result]))
        write_jsonl(out / "answers.jsonl", check.answer_records([result]))
        print(f"wrote {out}/alignment.csv, measured_profiles.csv, answers.jsonl")
    return 0
