"""LoRA training throughput on the real VIM data: packed (padding-free) vs dynamic padding.

Both sides go through the real trainer (`train_lora`) on the same examples, seed and batch
size; only the collator differs. The examples are the first `--examples` of stage 1
(arguments) and of stage 2 (survey answers) for one target, in the demo's chat form and
max length. Useful tokens are the examples' own tokens; padding is cost, not work. The
bound on the gain is the padding share, printed first: dynamic padding computes
sum(batch max x batch rows) tokens for sum(lengths) useful ones.

    python bench/bench_train_packing.py [--target Hed] [--examples 48] [--batch-size 8]
"""
from __future__ import annotations

import argparse

from bench_train_padding import run

from valueharms import targets
from valueharms.align.trainer import TrainConfig, encode
from valueharms.align.vim_data import build_vim
from valueharms.models import load_tokenizer, resolve


def padded_tokens(lengths: list[int], batch: int) -> int:
    """Tokens dynamic padding computes, batches taken in order (an upper bound on the
    Trainer's shuffled batches being any better)."""
    return sum(max(lengths[k:k + batch]) * len(lengths[k:k + batch])
               for k in range(0, len(lengths), batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--target", default="Hed")
    parser.add_argument("--examples", type=int, default=48, help="per stage")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=160, help="the demo's")
    args = parser.parse_args()

    model = resolve(args.model)
    tokenizer = load_tokenizer(model)
    data = build_vim(targets.find(args.target, None))
    config = TrainConfig(epochs=1, batch_size=args.batch_size, max_length=args.max_length,
                         save_steps=10_000, progress=False)
    print(f"model {args.model or 'embedded SmolLM2-135M-Instruct'}, target {args.target}, "
          f"first {args.examples} training examples per stage, batch {args.batch_size}, "
          f"max length {args.max_length}, 1 epoch each; machine shared with other jobs")
    warm = data.split("stage1", "train")[:2 * args.batch_size]
    for packing in (False, True):  # untimed: the first run pays for CUDA/kernel start-up
        run(model, warm, config.changed(packing=packing), 1)
    totals = {"packed": 0.0, "padded": 0.0}
    useful_all = 0
    for stage in ("stage1", "stage2"):
        examples = data.split(stage, "train")[:args.examples]
        lengths = [len(encode(e, tokenizer, args.max_length).input_ids) for e in examples]
        useful = sum(lengths)
        useful_all += useful
        print(f"{stage}: {len(examples)} examples, {min(lengths)}-{max(lengths)} tokens "
              f"(mean {useful / len(lengths):.0f}); dynamic padding computes about "
              f"{padded_tokens(lengths, args.batch_size) / useful:.2f}x the useful tokens")
        rates = {"padded": run(model, examples, config, useful),
                 "packed": run(model, examples, config.changed(packing=True), useful)}
        for mode, rate in rates.items():
            totals[mode] += useful / rate
            print(f"  {mode:7s} {rate:8.1f} useful tokens/s")
        print(f"  ratio {stage}_packing {rates['packed'] / rates['padded']:.2f}")
    print(f"both stages: packed {useful_all / totals['packed']:.1f}, dynamic padding "
          f"{useful_all / totals['padded']:.1f} useful tokens/s")
    print(f"ratio train_packing {totals['padded'] / totals['packed']:.2f}")


if __name__ == "__main__":
    main()
