"""``valueharms prompt show``: the exact prompt one system sees for one benchmark item."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError
from . import add_data_dir, add_subcommands


def register(sub) -> None:
    parser = sub.add_parser("prompt", help="inspect the prompts that reach the model")
    cmds = add_subcommands(parser, "prompt_command")

    p = cmds.add_parser("show", help="print the exact prompt for one system and benchmark item")
    p.add_argument("--system", required=True,
                   help="vanilla, vim:<target>, prompt:<target> or benign:<dataset>, "
                        "optionally +safety, +value:<Value> or +dual:<Value>")
    p.add_argument("--benchmark", required=True,
                   help="rtp, holisticbiasr, hexphi, beavertails or advbench")
    p.add_argument("--item", required=True, type=int, help="index in the benchmark's item list")
    p.add_argument("--subset", default=None, help="benchmark subset (e.g. holisticbiasr dispreferred)")
    p.add_argument("--model", default=None,
                   help="model whose tokenizer and chat template render the prompt (default: "
                        "the embedded model; not read with --form base unless --json)")
    p.add_argument("--form", choices=("auto", "chat", "base"), default="auto",
                   help="chat template (chat), plain text (base), or chat when the model has one")
    p.add_argument("--profiles", default=None, metavar="FILE",
                   help="your own target profiles (.csv/.json/.toml) for prompt:/vim: systems")
    p.add_argument("--json", action="store_true",
                   help="print a JSON object with the item, the prompt and token_ids (the exact "
                        "ids that reach the model, special tokens such as BOS included) instead "
                        "of the bare prompt")
    add_data_dir(p)
    p.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from .. import benchmarks, prompts, systems, targets

    # Check every argument before loading items or a tokenizer.
    extra = targets.read_profiles(args.profiles) if args.profiles else []
    system = systems.parse_system(args.system, data_dir=args.data_dir, extra=extra)
    profile = targets.find(str(system.target), args.data_dir, extra) \
        if system.kind == "prompt" else None
    benchmarks.get(args.benchmark)
    if args.item < 0:
        raise InputError(f"--item {args.item}: must be 0 or more")
    from ..chat import prompt_token_ids, uses_chat
    from ..models import load_tokenizer

    items = benchmarks.load_items(args.benchmark, subset=args.subset, data_dir=args.data_dir,
                                  limit=args.item + 1)
    if args.item >= len(items):
        raise InputError(f"--item {args.item}: out of range; {args.benchmark} has {len(items)} items")
    item = items[args.item]
    # The base form is the text itself; only a chat template or token ids need the tokenizer
    # (seconds to load).
    tokenizer = None if args.form == "base" and not args.json else load_tokenizer(args.model)
    prompt = prompts.build_prompt(system, item, tokenizer, profile=profile, form=args.form)
    form = "chat" if tokenizer is not None and uses_chat(tokenizer, args.form) else "base"
    if args.json:
        json.dump({"system": system.key, "benchmark": item.benchmark, "item": args.item,
                   "id": item.id, "category": item.category, "form": form,
                   "prompt": prompt, "token_ids": prompt_token_ids(prompt, tokenizer)},
                  sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(prompt)  # exactly the prompt: it may end in a newline or not
    return 0
