"""VIM discrimination test: does each VIM model sit closer to its own target than to the other's?

Trains VIM on the embedded model for two (or more) contrasting paper targets, then measures
every system on every target's profile with the paper's instrument (PVQ-40, answers read as
the probability-weighted mean over 1-6, ``expected``; see valueharms.align.check) and prints
the cross table: one row per system (the base model, each target's prompting baseline, each
VIM model), one column per target, NMSE and Pearson r in each cell. No assumption about the
level of the answers is needed: a VIM model that learned its target sits closer to it than
to the other target. The last line is ``ratio vim_discrimination <mean over VIM models of
(NMSE against the other targets / NMSE against its own)>`` (above 1: the models are told
apart by their targets; 1: they are not).

Stage 1 and stage 2 may use different slices (``--stage1-limit``, ``--stage2-limit``
arguments): the survey answers of stage 2 are what the questionnaire reads. A snapshot of the
stage-2 adapter is kept every ``--snapshot-every`` optimizer steps, and the learning curve
(r and NMSE against the own target by stage-2 examples seen; 0 = stage 1 only) is printed.

Training is resumable and skipped when ``--out`` already holds a finished run with the same
inputs, so the targets may be trained in parallel processes (``--train-only --targets X``),
and the table printed afterwards by one run over all of them.

    python bench/bench_vim_alignment.py [--targets close_Self-Transcendence_9,close_Self-Enhancement_10]
        [--stage1-limit 96] [--stage2-limit 384] [--epochs 1] [--lr 1e-3] [--out DIR] [--train-only]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from valueharms import targets
from valueharms.align.trainer import TrainConfig, train_lora
from valueharms.align.vim_data import build_vim

CURVE = "curve"  # stage-2 snapshots: curve/examples-N


class Snapshots(TrainerCallback):
    """Save the adapter every ``every`` optimizer steps, named by the examples seen so far."""

    def __init__(self, folder: Path, every: int, examples_per_step: int):
        self.folder, self.every, self.per_step = folder, every, examples_per_step

    def on_step_end(self, args, state, control, model=None, **kw):
        if model is not None and state.global_step % self.every == 0:
            model.save_pretrained(self.folder / f"examples-{state.global_step * self.per_step}")


def train_target(model: str | None, name: str, out: Path, config: TrainConfig,
                 args: argparse.Namespace) -> dict:
    """Both VIM stages for one target (stage 2 continues stage 1), with stage-2 snapshots."""
    target = targets.find(name)
    stage1_data = build_vim(target, limit=args.stage1_limit)
    stage2_data = build_vim(target, limit=args.stage2_limit)
    say = lambda m: print(f"  [{name}] {m}", flush=True)  # noqa: E731
    start = time.perf_counter()
    stage1 = train_lora(model, stage1_data.split(1, "train"), stage1_data.split(1, "valid"),
                        out / "stage1", config, say=say)
    snapshots = Snapshots(out / CURVE, args.snapshot_every, config.batch_size * config.grad_accum)
    stage2 = train_lora(model, stage2_data.split(2, "train"), stage2_data.split(2, "valid"),
                        out / "stage2", config, init_adapter=stage1.adapter_dir,
                        callbacks=[snapshots], say=say)
    return {"target": name, "seconds": time.perf_counter() - start,
            "stage1": stage1, "stage2": stage2}


def losses(log_path: str) -> list[float]:
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def describe_training(run: dict) -> list[str]:
    lines = []
    for stage in ("stage1", "stage2"):
        result = run[stage]
        curve = losses(result.log_path)
        head, tail = curve[:3], curve[-3:]
        lines.append(f"{run['target']} {stage}: {result.n_train} train / {result.n_valid} valid "
                     f"examples, {len(curve)} steps, loss first 3 {sum(head) / len(head):.3f} "
                     f"-> last 3 {sum(tail) / len(tail):.3f}, valid loss "
                     f"{result.best_valid_loss if result.best_valid_loss is None else round(result.best_valid_loss, 4)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="close_Self-Transcendence_9,close_Self-Enhancement_10",
                        help="comma-separated paper targets (at least two for the cross table)")
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--stage1-limit", type=int, default=96, help="arguments in stage 1")
    parser.add_argument("--stage2-limit", type=int, default=384, help="arguments in stage 2")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--snapshot-every", type=int, default=10,
                        help="stage-2 optimizer steps between learning-curve snapshots")
    parser.add_argument("--out", default=None, help="keep the adapters here (default: temporary)")
    parser.add_argument("--train-only", action="store_true",
                        help="train (or find trained) and stop; print no table")
    args = parser.parse_args()

    names = [n for n in args.targets.split(",") if n]
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         max_length=args.max_length, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        runs = [train_target(args.model, n, out / n, config, args) for n in names]
        for run in runs:
            print("\n".join(describe_training(run)))
            print(f"{run['target']}: training {run['seconds']:.0f} s (0 when found finished)")
        if args.train_only:
            return
        raise SystemExit("the measuring half is not written yet")


if __name__ == "__main__":
    main()
