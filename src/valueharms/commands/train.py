"""``valueharms train``: LoRA fine-tunes (VIM for a target profile, benign baselines)."""
from __future__ import annotations

import argparse

from ..config import BENIGN_DATASETS
from . import add_data_dir, add_model_args, add_options, add_subcommands, model_options, options_from


def register(sub) -> None:
    from ..config import BenignOptions, VimOptions

    parser = sub.add_parser("train", help="fine-tune LoRA adapters (vim, benign)")
    cmds = add_subcommands(parser, "train_command")

    p = cmds.add_parser("vim", help="two-stage value injection for one target profile")
    _common(p)
    p.add_argument("--target", required=True, help="profile name (see `valueharms targets list`)")
    add_options(p, VimOptions, title="training (the study's [train] keys)")
    p.set_defaults(func=_vim)

    p = cmds.add_parser("benign", help=f"a benign fine-tune ({', '.join(BENIGN_DATASETS)})")
    _common(p)
    p.add_argument("--dataset", required=True, choices=BENIGN_DATASETS,
                   help="dolly-no-safety: Qi et al.'s safety-filtered Dolly, the paper's file")
    p.add_argument("--data-file", default=None,
                   help="the data set's file (default: found in the data directories)")
    p.add_argument("--exclude-categories", nargs="+", default=[], metavar="CATEGORY",
                   help="dolly only (either file): leave out these categories")
    add_options(p, BenignOptions, skip=("data_files",),
                title="training (the study's [benign] keys)")
    p.set_defaults(func=_benign)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="Hugging Face id or path of a causal LM (default: the embedded model)")
    p.add_argument("--out", required=True, help="output directory for the adapter(s)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    add_model_args(p)
    add_data_dir(p)


def _vim(args: argparse.Namespace) -> int:
    from .. import targets
    from ..align.vim import run_vim
    from ..config import VimOptions

    options = options_from(args, VimOptions)
    model, model_args = model_options(args)
    profile = targets.find(args.target, args.data_dir)
    result = run_vim(model, profile, args.out, options, seed=args.seed, data_dir=args.data_dir,
                     model_args=model_args)
    print(f"stage 1 -> {result.stage1.adapter_dir}\nstage 2 -> {result.stage2.adapter_dir}\n"
          f"manifest -> {result.manifest_path}")
    return 0


def _benign(args: argparse.Namespace) -> int:
    from ..align.benign import run_benign
    from ..config import BenignOptions

    options = options_from(args, BenignOptions)
    model, model_args = model_options(args)
    result = run_benign(model, args.dataset, args.out, options, seed=args.seed,
                        data_dir=args.data_dir, data_file=args.data_file,
                        exclude_categories=args.exclude_categories, model_args=model_args)
    print(f"adapter -> {result.adapter_dir}\nmanifest -> {result.manifest_path}")
    return 0
