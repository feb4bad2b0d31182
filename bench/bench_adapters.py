"""Generation with K LoRA adapters: one model load + mixed-adapter batches vs a reload per adapter.

The reference evaluates each value-aligned model on its own: one process per adapter that
loads the base model, attaches that profile's adapter and generates its prompts. The toolkit
loads the base model once, attaches all K adapters, and fills every batch with rows of any
adapter (PEFT's per-row ``adapter_names``), so batches stay full even when each adapter has
few prompts. Three ways are timed on the same K x P rows, same batch-size cap, greedy:

- reference: a new Python process per adapter (start-up, imports, model load, generation);
- reload in process: the same loop without process start-up (a lower bound for any reload);
- one load, mixed batches: the toolkit's HF backend.

All three must produce the same texts (checked). K random LoRA adapters (r 8 on q/v, non-zero
B) are written to a temporary folder. Also reported: generated tokens/s of the base model at
batch sizes 1, 8 and 32 (tokens counted by re-tokenising the generated texts). The last line
is reference time / one-load time.

    python bench/bench_adapters.py [--model M] [--adapters 8] [--prompts 4] [--batch-size 32]
                                   [--max-new-tokens 32]
"""
from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from valueharms import benchmarks, models, systems
from valueharms import prompts as prompt_text
from valueharms.generate import GenRequest
from valueharms.generate.hf import HFBackend
from valueharms.records import Decoding


def make_adapters(model: str, k: int, root: Path) -> list[str]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(k):
        torch.manual_seed(1000 + i)
        base = AutoModelForCausalLM.from_pretrained(model)
        config = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1,
                            target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        peft_model = get_peft_model(base, config)
        with torch.no_grad():  # random weights that change outputs without wrecking the model
            for name, p in peft_model.named_parameters():
                if "lora_" in name:
                    p.mul_(0.3)
        path = root / f"adapter{i}"
        peft_model.save_pretrained(path)
        paths.append(str(path))
    return paths


def reload_per_adapter(model: str, adapters: list[str], prompts: list[str], decoding: Decoding,
                       batch_size: int) -> tuple[float, dict]:
    """The reference's way: a fresh model load for each adapter, its prompts only."""
    texts = {}
    start = time.perf_counter()
    for path in adapters:
        backend = HFBackend(model, batch_size=batch_size, device="cpu")
        out = backend.generate([GenRequest(p, decoding, 0, path) for p in prompts])
        texts.update({(path, p): r.text for p, r in zip(prompts, out)})
        del backend
        gc.collect()
    return time.perf_counter() - start, texts


def process_per_adapter(model: str, adapters: list[str], prompts: list[str], decoding: Decoding,
                        batch_size: int, tmp: Path) -> tuple[float, dict]:
    """The reference's way: each adapter in its own process, as its inference script ran."""
    prompts_file = tmp / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    texts = {}
    start = time.perf_counter()
    for i, path in enumerate(adapters):
        out = tmp / f"texts{i}.json"
        subprocess.run([sys.executable, __file__, "--child", path, "--model", model,
                        "--prompts-file", str(prompts_file), "--out", str(out),
                        "--batch-size", str(batch_size),
                        "--max-new-tokens", str(decoding.max_new_tokens)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        texts.update({(path, p): t for p, t in zip(prompts, json.loads(out.read_text()))})
    return time.perf_counter() - start, texts


def child(args: argparse.Namespace) -> None:
    prompts = json.loads(Path(args.prompts_file).read_text())
    decoding = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=args.max_new_tokens)
    backend = HFBackend(args.model, batch_size=args.batch_size, device="cpu")
    out = backend.generate([GenRequest(p, decoding, 0, args.child) for p in prompts])
    Path(args.out).write_text(json.dumps([r.text for r in out]))


def one_load_mixed(model: str, adapters: list[str], prompts: list[str], decoding: Decoding,
                   batch_size: int) -> tuple[float, dict]:
    start = time.perf_counter()
    backend = HFBackend(model, batch_size=batch_size, device="cpu")
    rows = [(a, p) for a in adapters for p in prompts]
    out = backend.generate([GenRequest(p, decoding, 0, a) for a, p in rows])
    return time.perf_counter() - start, {row: r.text for row, r in zip(rows, out)}


def tokens_per_second(model: str, prompts: list[str], decoding: Decoding, batch: int,
                      rows: int) -> float:
    backend = HFBackend(model, batch_size=batch, device="cpu")
    requests = [GenRequest(prompts[i % len(prompts)], decoding, 0) for i in range(rows)]
    backend.generate(requests[:batch])  # warm-up
    start = time.perf_counter()
    out = backend.generate(requests)
    seconds = time.perf_counter() - start
    tokens = sum(len(backend.tokenizer(r.text, add_special_tokens=False)["input_ids"]) for r in out)
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per adapter")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one adapter's process
    parser.add_argument("--prompts-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    model = models.resolve(args.model)
    decoding = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=args.max_new_tokens)
    tokenizer = models.load_tokenizer(model)
    vanilla = systems.parse_system("vanilla")
    items = benchmarks.load_items("hexphi", limit=max(args.prompts, 8))
    texts = [prompt_text.build_prompt(vanilla, it, tokenizer) for it in items]
    print(f"model {args.model or 'embedded SmolLM2-135M-Instruct'} on CPU "
          f"({torch.get_num_threads()} threads); {args.adapters} adapters x {args.prompts} "
          f"hexphi prompts, greedy, {args.max_new_tokens} new tokens, batch cap {args.batch_size}")

    with tempfile.TemporaryDirectory() as tmp:
        adapters = make_adapters(model, args.adapters, Path(tmp))
        mixed_s, mixed = one_load_mixed(model, adapters, texts[:args.prompts], decoding,
                                        args.batch_size)
        reload_s, reloaded = reload_per_adapter(model, adapters, texts[:args.prompts], decoding,
                                                args.batch_size)
        ref_s, ref = process_per_adapter(model, adapters, texts[:args.prompts], decoding,
                                         args.batch_size, Path(tmp))
    same = sum(mixed[k] == reloaded[k] == ref[k] for k in mixed)
    distinct = len({mixed[(a, texts[0])] for a in adapters})
    per = min(args.prompts, args.batch_size)
    print(f"reference, a process per adapter: {ref_s:7.2f} s ({args.adapters} processes, "
          f"batches of {per})")
    print(f"reload per adapter, in process:   {reload_s:7.2f} s ({args.adapters} loads, "
          f"batches of {per})")
    print(f"one load, mixed batches:          {mixed_s:7.2f} s (1 load, batches of "
          f"{min(args.prompts * args.adapters, args.batch_size)})")
    print(f"identical texts in all three: {same}/{len(mixed)}; distinct outputs across adapters "
          f"for one prompt: {distinct}/{args.adapters}")
    print(f"one load vs reload in process: {reload_s / mixed_s:.2f}x")
    for batch in (1, 8, 32):
        rate = tokens_per_second(model, texts, decoding, batch, rows=max(batch, 8))
        print(f"base model, batch {batch:2d}: {rate:8.1f} generated tokens/s")
    print(f"ratio adapters_one_load {ref_s / mixed_s:.2f}")


if __name__ == "__main__":
    main()
