"""VIM discrimination test: does each VIM model sit closer to its own target than to the other's?

Trains VIM on the embedded model for two (or more) contrasting paper targets, then measures
every system on every target's profile with the paper's instrument (PVQ-40, answers read as
the probability-weighted mean over 1-6, ``expected``; see valueharms.align.check) and prints
the cross table: one row per system (the base model, each target's prompting baseline, each
VIM model), one column per target, NMSE and Pearson r in each cell. No assumption about the
level of the answers is needed: a VIM model that learned its target sits closer to it than
to the other target. One line is ``ratio vim_discrimination <mean NMSE of the VIM models
against the other targets / mean NMSE against their own>`` (above 1: the models are told
apart by their targets; 1: they are not, e.g. the base model in every row). The same ratio is
printed for the base model (1 by construction) and the prompting baseline. A model can raise
it by moving only the level of its answers towards its target's mean, so the very last line,
``ratio vim_discrimination_centered``, is the same ratio on ``nmse_centered``: above 1 only
when the models took their targets' shapes.

Stage 1 and stage 2 may use different slices (``--stage1-limit``, ``--stage2-limit``
arguments): the survey answers of stage 2 are what the questionnaire reads. A snapshot of the
stage-2 adapter is kept every ``--snapshot-every`` optimizer steps, and the learning curve
(r and NMSE against the own target by stage-2 examples seen; 0 = stage 1 only) is printed.

Training is resumable and skipped when ``--out`` already holds a finished run with the same
inputs, so the targets may be trained in parallel processes (``--train-only --targets X``),
and the table printed afterwards by one run over all of them.

    python bench/bench_vim_alignment.py [--targets close_Self-Transcendence_9,close_Self-Enhancement_10]
        [--stage1-limit 96] [--stage2-limit 800] [--epochs 1] [--lr 1e-3] [--out DIR] [--train-only]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from valueharms import targets
from valueharms.align import check
from valueharms.align.trainer import TrainConfig, train_lora
from valueharms.align.vim_data import build_vim
from valueharms.generate import make_backend

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
                     f"{_rounded(result.best_valid_loss)}")
    return lines


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="close_Self-Transcendence_9,close_Self-Enhancement_10",
                        help="comma-separated paper targets (at least two for the cross table)")
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--stage1-limit", type=int, default=96, help="arguments in stage 1")
    parser.add_argument("--stage2-limit", type=int, default=800, help="arguments in stage 2")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--snapshot-every", type=int, default=32,
                        help="stage-2 optimizer steps between learning-curve snapshots")
    parser.add_argument("--curve-points", type=int, default=4,
                        help="stage-2 snapshots measured for the learning curve (evenly spaced)")
    parser.add_argument("--out", default=None, help="keep the adapters here (default: temporary)")
    parser.add_argument("--measure-as-is", action="store_true",
                        help="train nothing: measure what --out holds (a stopped stage 2 is "
                             "measured at its latest snapshot, and said so)")
    parser.add_argument("--train-only", action="store_true",
                        help="train (or find trained) and stop; print no table")
    args = parser.parse_args()

    names = [n for n in args.targets.split(",") if n]
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         max_length=args.max_length, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        if not args.measure_as_is:
            for n in names:
                run = train_target(args.model, n, out / n, config, args)
                print("\n".join(describe_training(run)))
                print(f"{n}: training {run['seconds']:.0f} s (0 when found finished)")
        if args.train_only:
            return
        planned = {n: args.epochs * len(build_vim(targets.find(n), limit=args.stage2_limit)
                                        .split(2, "train")) for n in names}
        measure_all(args, names, planned, out)


def curve_on_disk(folder: Path, keep: int, planned: int) -> tuple[list[tuple[int, str]], str]:
    """(stage-2 examples seen, adapter dir) for one target, read from its folder: stage 1
    alone, up to ``keep`` evenly spaced snapshots, then the VIM model: the finished stage 2,
    or, when stage 2 was stopped, its latest snapshot (said in the note)."""
    if not (folder / "stage1" / "manifest.json").is_file():
        raise SystemExit(f"{folder}: stage 1 is not finished; nothing to measure")
    snaps = sorted((int(p.name.split("-")[1]), str(p)) for p in (folder / CURVE).glob("examples-*"))
    if (folder / "stage2" / "manifest.json").is_file():
        final, note = (planned, str(folder / "stage2")), f"stage 2 finished ({planned} examples)"
    elif snaps:
        final = snaps[-1]
        note = f"stage 2 STOPPED: the VIM row is its snapshot after {final[0]} of {planned} examples"
    else:
        raise SystemExit(f"{folder}: no stage-2 adapter or snapshot yet; nothing to measure")
    snaps = [(n, p) for n, p in snaps if n < final[0]]  # the last batch may be short
    if len(snaps) > keep:
        snaps = [snaps[round(i * (len(snaps) - 1) / (keep - 1))] for i in range(keep)]
    return [(0, str(folder / "stage1")), *snaps, final], note


def measure_all(args: argparse.Namespace, names: list[str], planned: dict[str, int],
                out: Path) -> None:
    """The cross table (every system on every target) and each target's learning curve."""
    profiles = [targets.find(n) for n in names]
    curves, notes = {}, []
    for n in names:
        curves[n], note = curve_on_disk(out / n, args.curve_points, planned[n])
        notes.append(f"{n}: {note}")
    print("\n".join(notes))
    backend = make_backend("hf", args.model, batch_size=8)
    subjects = [check.Subject("vanilla"),
                *(check.Subject(f"prompt:{p.name}", persona=p) for p in profiles),
                *(check.Subject(f"vim:{n}", adapter=curves[n][-1][1]) for n in names)]
    # the finished stage 2 is the VIM row itself: not asked twice
    snapshots = [check.Subject(f"curve:{name}:{n}", adapter=path)
                 for name, points in curves.items() for n, path in points[:-1]]
    backend.load_adapters([s.adapter for s in subjects + snapshots if s.adapter])
    start = time.perf_counter()
    result = check.run_check(backend, subjects + snapshots, profiles, instrument="pvq40",
                             method="expected")
    seconds = time.perf_counter() - start
    check.write(result, out / "check")
    rows = {(r.system, r.target.name): r for r in result.rows}

    print(f"\nPVQ-40, expected reading: {len(subjects) + len(snapshots)} systems x 40 items in "
          f"{seconds:.0f} s; cell = NMSE (Pearson r) against the column's target")
    print("\n".join(summary_lines(rows, [s.key for s in subjects], names, curves)))


def summary_lines(rows: dict, systems: list[str], names: list[str],
                  curves: dict[str, list[tuple[int, str]]]) -> list[str]:
    """The cross table, the measured profiles, each target's learning curve and the
    discrimination ratios (by NMSE and by centred NMSE), from the check's rows keyed by
    (system, target); ``curves``: target -> (stage-2 examples seen, adapter), the last the
    VIM row itself."""
    width = max(len(s) for s in systems) + 2
    lines = [" " * width + "".join(f"{n:>32}" for n in names)]
    lines += [f"{s:{width}}" + "".join(f"{_nmse_r(rows[(s, n)].metrics):>32}" for n in names)
              for s in systems]
    lines += [f"measured {s}: " + " ".join(f"{v:.2f}" for v in rows[(s, names[0])].measured)
              for s in systems[1:]]
    lines.append("\nlearning curve (stage-2 examples seen -> NMSE (r) on own target | other "
                 "target(s)):")
    for name, points in curves.items():
        others = [n for n in names if n != name]
        for i, (n, _) in enumerate(points):
            key = f"vim:{name}" if i == len(points) - 1 else f"curve:{name}:{n}"
            lines.append(f"  {name} {n:5d}: {_nmse_r(rows[(key, name)].metrics):>18} | "
                         + " ".join(_nmse_r(rows[(key, o)].metrics) for o in others))
    for kind in ("vanilla", "prompt", "vim"):
        keys = {n: "vanilla" if kind == "vanilla" else f"{kind}:{n}" for n in names}
        own, other = _own_other(rows, keys, names)
        lines.append(f"{kind}: mean NMSE on its own target {own:.4f}, on the other target(s) "
                     f"{other:.4f}: ratio {other / own:.3f}")
    vim = {n: f"vim:{n}" for n in names}
    for metric, suffix in (("nmse", ""), ("nmse_centered", "_centered")):
        # centred: blind to the answers' level, so only a change of shape can tell them apart
        own, other = _own_other(rows, vim, names, metric)
        lines.append(f"ratio vim_discrimination{suffix} {other / own:.3f}")
    return lines


def _own_other(rows: dict, keys: dict[str, str], names: list[str],
               metric: str = "nmse") -> tuple[float, float]:
    """Mean ``metric`` of each model (``keys``: target -> system) on its own target and on
    the others. Pooled before dividing, so models that are all alike give exactly 1 whatever
    the targets' levels (a mean of per-model ratios would not: 1.18 for two identical random
    models on these targets)."""
    own = [getattr(rows[(keys[n], n)].metrics, metric) for n in names]
    other = [getattr(rows[(keys[n], o)].metrics, metric) for n in names for o in names if o != n]
    return sum(own) / len(own), sum(other) / len(other)


def _nmse_r(m: check.Metrics) -> str:
    r = "r n/a" if m.pearson_r is None else f"r {m.pearson_r:+.2f}"
    return f"{m.nmse:.4f} ({r})"


if __name__ == "__main__":
    main()
