"""Cost model of the paper-scale study from per-token costs measured here.

Measures, on this machine's device and the given model, (a) LoRA training throughput in useful
tokens/s (the real trainer on VIM stage-1 examples) and (b) generation throughput in new
tokens/s (one model load, batch 32). Counts the paper-scale volumes exactly from the data:
training tokens of both VIM stages for every target of the set (5 epochs), and the new tokens
of the four benchmarks (items x samples x max new tokens, an upper bound: stop strings end
many answers early). Prints the hours this device would need and how they scale with the
number of profiles and benchmarks. The figures are only as good as the device they were
measured on: run it with ``--model`` on the GPU you plan to use for a 7B estimate.

The last line is ``ratio cost_generate_over_train <generation hours / training hours>``.

    python bench/bench_cost_model.py [--model M] [--device cuda] [--set paper] [--epochs 5]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from valueharms import benchmarks, targets
from valueharms.align import vim_data
from valueharms.align.trainer import TrainConfig, encode, train_lora
from valueharms.chat import render_prompt
from valueharms.generate import GenRequest, make_backend
from valueharms.models import load_tokenizer
from valueharms.records import Decoding

BENCHMARKS = {"rtp": None, "holisticbiasr": "all", "hexphi": None, "beavertails": None}


def mean_tokens(examples, tokenizer, max_length: int) -> float:
    return float(np.mean([len(encode(e, tokenizer, max_length).input_ids) for e in examples]))


def training_volume(profiles, tokenizer, epochs: int, max_length: int, sample: int = 200):
    """Training tokens per profile for both stages (all splits' train parts, ``epochs``)."""
    tables = vim_data.build_stage1_many(profiles, vim_data.read_stage1_arguments())
    n1 = np.array([(t.split == 0).sum() for t in tables])
    first = [e for e in tables[0].examples() if e.meta["split"] == "train"][:sample]
    stage2 = vim_data.build_vim(profiles[0]).split("stage2", "train")
    per1 = mean_tokens(first, tokenizer, max_length)
    per2 = mean_tokens(stage2[:sample], tokenizer, max_length)
    return n1 * per1 * epochs + len(stage2) * per2 * epochs, first


def generation_volume() -> dict[str, int]:
    """New tokens per system, per benchmark (paper decoding defaults)."""
    out = {}
    for name, subset in BENCHMARKS.items():
        bench = benchmarks.get(name)
        n = len(benchmarks.load_items(name, subset))
        out[name] = n * bench.decoding.samples * bench.decoding.max_new_tokens
    return out


def train_speed(model, examples, tokenizer, device_note: str) -> float:
    config = TrainConfig(epochs=1, batch_size=8, max_length=512, progress=False)
    useful = sum(len(encode(e, tokenizer, 512).input_ids) for e in examples)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_lora(model, examples, [], Path(tmp) / "a", config, say=lambda m: None)
        rows = [json.loads(line) for line in Path(result.log_path).read_text().splitlines()]
    runtime = next(r["runtime_s"] for r in rows if "runtime_s" in r)
    print(f"training: {len(examples)} examples, {useful} tokens in {runtime:.1f} s "
          f"({device_note})")
    return useful / runtime


def generate_speed(model, device, prompts: list[str], new_tokens: int) -> float:
    backend = make_backend("hf", model, device=device, batch_size=len(prompts))
    decoding = Decoding(temperature=0.1, top_p=0.75, max_new_tokens=new_tokens)
    requests = [GenRequest(render_prompt(p, backend.tokenizer), decoding, seed=i)
                for i, p in enumerate(prompts)]
    backend.generate(requests[:2])  # warm-up
    start = time.perf_counter()
    results = backend.generate(requests)
    seconds = time.perf_counter() - start
    produced = sum(len(backend.tokenizer(r.text, add_special_tokens=False)["input_ids"])
                   for r in results)
    print(f"generation: {len(prompts)} prompts, {produced} new tokens in {seconds:.1f} s")
    return max(produced, 1) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--set", default="paper", help="target set (default: the 154)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--train-examples", type=int, default=16)
    args = parser.parse_args()

    profiles = targets.load_set(args.set)
    tokenizer = load_tokenizer(args.model)
    train_tokens, examples = training_volume(profiles, tokenizer, args.epochs, args.max_length)
    gen_tokens = generation_volume()
    device_note = args.device or "default device"
    train_tps = train_speed(args.model, examples[:args.train_examples], tokenizer, device_note)
    prompts = [item.text for item in benchmarks.load_items("hexphi", limit=32)]
    gen_tps = generate_speed(args.model, args.device, prompts, 32)
    print(f"measured: training {train_tps:.0f} useful tokens/s, generation {gen_tps:.1f} new "
          f"tokens/s (batch 32)")

    hours_train = train_tokens / train_tps / 3600  # per profile
    per_bench = {b: t / gen_tps / 3600 for b, t in gen_tokens.items()}  # per system
    print(f"volumes: {train_tokens.mean() / 1e6:.2f} M training tokens per profile (2 stages x "
          f"{args.epochs} epochs; range {train_tokens.min() / 1e6:.2f}-"
          f"{train_tokens.max() / 1e6:.2f} M); new tokens per system: "
          + ", ".join(f"{b} {t / 1e6:.2f} M" for b, t in gen_tokens.items()))
    print(f"{'profiles':>8} {'benchmarks':>22} {'train h':>10} {'generate h':>11} {'total h':>10}")
    n = len(profiles)
    for k in sorted({1, 14, n}):
        for label, chosen in (("rtp", ["rtp"]), ("all four", list(BENCHMARKS))):
            t = k * float(hours_train.mean())
            g = k * sum(per_bench[b] for b in chosen)
            print(f"{k:>8} {label:>22} {t:10.1f} {g:11.1f} {t + g:10.1f}")
    total_train = float(hours_train.sum())
    total_gen = n * sum(per_bench.values())
    print(f"paper scale on this device: {total_train:.0f} h training + {total_gen:.0f} h "
          f"generation for {n} profiles x 4 benchmarks (linear in both; scoring not included)")
    print(f"ratio cost_generate_over_train {total_gen / total_train:.2f}")


if __name__ == "__main__":
    main()
