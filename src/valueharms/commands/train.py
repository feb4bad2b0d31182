"""``valueharms train``: LoRA fine-tunes (VIM for a target profile, benign baselines)."""
from __future__ import annotations

import argparse

from ..errors import InputError
from . import add_data_dir, add_subcommands

STRATEGIES = ("min", "mean", "max")


def register(sub) -> None:
    parser = sub.add_parser("train", help="fine-tune LoRA adapters (vim, benign)")
    cmds = add_subcommands(parser, "train_command")

    p = cmds.add_parser("vim", help="two-stage value injection for one target profile")
    _common(p, epochs=5, lr=2e-5, batch_size=8, grad_accum=1, max_length=512)
    p.add_argument("--target", required=True, help="profile name (see `valueharms targets list`)")
    p.add_argument("--threshold", type=float, default=3,
                   help="an argument scoring at least this is positive (default 3)")
    p.add_argument("--strategy", choices=STRATEGIES, default="min",
                   help="how an argument's values combine into its score (default min)")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N arguments per stage (quick runs)")
    p.set_defaults(func=_vim)

    p = cmds.add_parser("benign", help="a benign fine-tune (alpaca, dolly, grammar, samsum)")
    _common(p, epochs=1, lr=2e-5, batch_size=1, grad_accum=16, max_length=2048)
    p.add_argument("--dataset", required=True, choices=("alpaca", "dolly", "grammar", "samsum"))
    p.add_argument("--data-file", default=None,
                   help="the data set's file (default: found in the data directories)")
    p.add_argument("--exclude-categories", nargs="+", default=[], metavar="CATEGORY",
                   help="dolly only: leave out these categories")
    p.add_argument("--limit", type=int, default=None, help="use only the first N examples")
    p.set_defaults(func=_benign)


def _common(p: argparse.ArgumentParser, **defaults) -> None:
    p.add_argument("--model", default=None,
                   help="Hugging Face id or path of a causal LM (default: the embedded model)")
    p.add_argument("--out", required=True, help="output directory for the adapter(s)")
    p.add_argument("--epochs", type=int, default=defaults["epochs"])
    p.add_argument("--lr", type=float, default=defaults["lr"])
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    p.add_argument("--grad-accum", type=int, default=defaults["grad_accum"],
                   help="gradient accumulation steps")
    p.add_argument("--max-length", type=int, default=defaults["max_length"],
                   help="tokens per example; longer prompts lose tokens from the left")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--prompt-form", choices=("auto", "chat", "base"), default="auto")
    p.add_argument("--save-steps", type=int, default=50, help="checkpoint interval (steps)")
    add_data_dir(p)


def _config(args: argparse.Namespace):
    from ..align.trainer import TrainConfig

    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         grad_accum=args.grad_accum, max_length=args.max_length, seed=args.seed,
                         prompt_form=args.prompt_form, save_steps=args.save_steps)
    config.validate()
    return config


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")


def _model(name: str | None) -> str | None:
    """``name`` once it is known to resolve (the embedded model is built here if needed)."""
    from .. import models

    models.resolve(name)
    return name


def _vim(args: argparse.Namespace) -> int:
    from .. import targets
    from ..align.trainer import train_vim

    config = _config(args)
    _check_limit(args.limit)
    if not 1 <= args.threshold <= 6:
        raise InputError(f"--threshold {args.threshold:g}: must be within 1..6")
    profile = targets.find(args.target, args.data_dir)
    result = train_vim(_model(args.model), profile, args.out, config, data_dir=args.data_dir,
                       limit=args.limit, threshold=args.threshold, strategy=args.strategy,
                       seed=args.seed)
    print(f"stage 1 -> {result.stage1.adapter_dir}\nstage 2 -> {result.stage2.adapter_dir}\n"
          f"manifest -> {result.manifest_path}")
    return 0


def _benign(args: argparse.Namespace) -> int:
    from ..align import benign
    from ..align.trainer import train_lora

    config = _config(args)
    _check_limit(args.limit)
    data = benign.load(args.dataset, data_file=args.data_file, data_dir=args.data_dir,
                       exclude_categories=args.exclude_categories, limit=args.limit)
    result = train_lora(_model(args.model), data.train, data.valid, args.out, config,
                        notes=[f"benign data set {args.dataset} from {data.source}"])
    print(f"adapter -> {result.adapter_dir}\nmanifest -> {result.manifest_path}")
    return 0
