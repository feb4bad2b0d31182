"""VIM on the embedded model: does a small two-stage run move the survey answers to the target?

Trains VIM for one target on the first N arguments per stage (1 epoch), then asks the base model
and the aligned model the survey items of the held-out test arguments (greedy) and compares
their measured profiles with the target (NMSE, see valueharms.align.check). Prints the training
loss at the start and end of each stage, both NMSEs and the unparseable counts; the last line
is ``ratio vim_alignment <base NMSE / VIM NMSE>`` (above 1: VIM moved the answers towards the
target). The learning rate is raised from the paper's 2e-5 because one epoch over 64 arguments
is a few dozen steps, not the paper's five epochs over thousands.

    python bench/bench_vim_alignment.py [--target close_Ben_9] [--limit 64] [--eval-limit 64]
                                        [--lr 1e-3] [--model M] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from valueharms import targets
from valueharms.align import check
from valueharms.align.trainer import TrainConfig, train_vim
from valueharms.generate import make_backend


def losses(log_path: str) -> list[float]:
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="close_Ben_9")
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--limit", type=int, default=64, help="arguments per stage")
    parser.add_argument("--eval-limit", type=int, default=64, help="test arguments asked")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--method", choices=check.METHODS, default="likelihood",
                        help="how answers are read (see valueharms.align.check)")
    parser.add_argument("--out", default=None, help="keep the adapters here (default: temporary)")
    args = parser.parse_args()

    target = targets.find(args.target)
    config = TrainConfig(epochs=1, lr=args.lr, max_length=args.max_length, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        start = time.perf_counter()
        vim = train_vim(args.model, target, out, config, limit=args.limit, say=lambda m: None)
        train_s = time.perf_counter() - start
        for name, stage in (("stage 1", vim.stage1), ("stage 2", vim.stage2)):
            curve = losses(stage.log_path)
            head, tail = curve[:3], curve[-3:]
            print(f"{name}: {stage.n_train} examples, {len(curve)} steps, loss first 3 "
                  f"{sum(head) / len(head):.3f} -> last 3 {sum(tail) / len(tail):.3f}")
        print(f"training: {train_s:.0f} s for both stages")

        arguments = check.test_arguments(limit=args.eval_limit)
        backend = make_backend("hf", args.model, batch_size=8)
        adapter = str(Path(vim.stage2.adapter_dir))
        backend.load_adapters([adapter])
        start = time.perf_counter()
        base = check.evaluate(backend, "vanilla", target, arguments, method=args.method)
        aligned = check.evaluate(backend, f"vim:{target.name}", target, arguments,
                                 adapter=adapter, method=args.method)
        eval_s = time.perf_counter() - start
    print(check.describe(base))
    print(check.describe(aligned))
    print(f"survey ({args.method}): {len(arguments)} test arguments x 2 systems in "
          f"{eval_s:.0f} s")
    if base.nmse is None or aligned.nmse is None:
        raise SystemExit("no parsed answers for one of the systems: NMSE undefined")
    print(f"NMSE base {base.nmse:.4f}  VIM {aligned.nmse:.4f}")
    print(f"ratio vim_alignment {base.nmse / aligned.nmse:.2f}")


if __name__ == "__main__":
    main()
