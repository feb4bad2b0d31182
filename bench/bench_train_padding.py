"""LoRA training throughput: useful (non-pad) tokens/s with dynamic padding vs fixed padding to 128.

Both runs go through the real trainer (`train_lora`) on the same grammar pairs, same seed and
batch size; only the collator differs (`bench_train_packing.py` compares packing). Useful
tokens are the examples' own tokens (prompt + completion), so padding counts as cost, not as
work. Runs on the embedded default model (SmolLM2-135M) by default; `--model` takes any causal LM.

The gain is the share of padding that fixed-length batches compute. With the base prompt form
(default here) grammar examples are 30-128 tokens long; with `--prompt-form chat` SmolLM2's chat
template adds a ~30-token system prompt, most examples come close to 128 and the gain vanishes.

    python bench/bench_train_padding.py [--model M] [--examples 32] [--batch-size 8]
                                        [--prompt-form base|chat]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from valueharms.align import benign
from valueharms.align.trainer import TrainConfig, encode, train_lora
from valueharms.models import load_tokenizer, resolve

FIXED = 128


def run(model: str, examples, config: TrainConfig, useful_tokens: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        result = train_lora(model, examples, [], Path(tmp) / "adapter", config, say=lambda m: None)
        summary = [json.loads(line) for line in Path(result.log_path).read_text().splitlines()]
        runtime = next(r["runtime_s"] for r in summary if "runtime_s" in r)
    return useful_tokens / runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--prompt-form", choices=("base", "chat"), default="base")
    args = parser.parse_args()

    model = resolve(args.model)
    examples = benign.load("grammar", limit=args.examples).train
    config = TrainConfig(epochs=1, batch_size=args.batch_size, max_length=FIXED, save_steps=10_000,
                         prompt_form=args.prompt_form, progress=False)
    tokenizer = load_tokenizer(model)
    lengths = [len(encode(e, tokenizer, FIXED, args.prompt_form).input_ids) for e in examples]
    useful = sum(lengths)
    print(f"model {args.model or 'embedded SmolLM2-135M-Instruct'}, {len(examples)} grammar pairs, "
          f"{args.prompt_form} prompt form, batch {args.batch_size}, "
          f"{len(examples) // args.batch_size} steps per mode")
    print(f"example length: mean {useful / len(lengths):.1f}, max {max(lengths)} tokens; "
          f"fixed padding computes {FIXED * len(lengths) / useful:.2f}x the useful tokens")
    dynamic = run(model, examples, config, useful)
    fixed = run(model, examples, config.changed(pad_to=FIXED), useful)
    print(f"dynamic padding: {dynamic:8.1f} useful tokens/s")
    print(f"fixed to {FIXED}:    {fixed:8.1f} useful tokens/s")
    print(f"ratio train_dynamic_padding {dynamic / fixed:.2f}")


if __name__ == "__main__":
    main()
