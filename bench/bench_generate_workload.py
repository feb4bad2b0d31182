"""The demo's generation workload: shared-prefix generation with a token budget vs the plain path.

Runs the real generation step (`valueharms.study.steps.generate`) of every benchmark of
`studies/demo.toml` (all its systems, its item limits, samples and token limits) twice, in
one process, on the same model: once as before this change (`prefix_cache = false`, no token
budget: every row's whole prompt in a left-padded batch of `batch_size` rows) and once with
the defaults (each batch's shared starts, the chat system prompt and the persona blocks,
computed once per adapter; batches cut by a token budget). The VIM and benign adapters the
demo would train are stood in for by random LoRA adapters (r 8 on q/v), which cost the same
to run. The two sides alternate per benchmark, so load on a shared machine hits both alike.
Both must write the same texts (checked, greedy and sampled rows alike):
`ratio generate_workload <old time / new time>`. Then the study's alignment step (every
system answering the questionnaire, read from next-token probabilities) the same two ways,
which must give the same measured profiles: `ratio alignment_check <old time / new time>`.

First it counts, without running the model, the prompt tokens each side computes (padding
included; new: each distinct shared prefix once plus every row's own tokens), a figure
that no load on the machine changes; `--count-only` stops there.

    python bench/bench_generate_workload.py [--study studies/demo.toml] [--count-only]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from bench_adapters import make_adapters

from valueharms import chat, files, models
from valueharms.generate.hf import TOKEN_BUDGET, HFBackend, shared_prefix_lengths
from valueharms.generate.run import plan_rows
from valueharms.study import plan, spec, steps

OLD = {"prefix_cache": False, "token_budget": 10 ** 9}  # every row's whole prompt, rows only


def texts(path: Path) -> dict[tuple, str]:
    return {(r["system"], r["prompt_id"], r["sample"]): r["text"] for r in files.read_jsonl(path)}


def prompt_tokens(study, step, backend: HFBackend) -> tuple[int, int, int]:
    """(rows, prompt tokens the plain path computes, tokens the shared-prefix path computes)
    for one generation step, from its batch plan and each batch's shared prefixes."""
    items, chosen, decoding = steps.generation_inputs(step, study)
    profiles = {t.name: t for t in study.targets}
    old_batches = plan_rows(chosen, items, backend, decoding, profiles, study.data_dir)
    backend.token_budget = study.generation.token_budget or TOKEN_BUDGET
    new_batches = plan_rows(chosen, items, backend, decoding, profiles, study.data_dir)
    backend.token_budget = None
    old = sum(len(b) * max(backend.prompt_length(r.request.prompt) for r in b) for b in old_batches)
    new = 0
    for batch in new_batches:
        ids = [chat.prompt_token_ids(r.request.prompt, backend.tokenizer) for r in batch]
        names = [r.request.adapter or "" for r in batch]
        cut = shared_prefix_lengths(ids, names)
        new += sum(len(p) for p in {(n, tuple(x[:k])) for x, k, n in zip(ids, cut, names) if k})
        new += len(batch) * max(len(x) - k for x, k in zip(ids, cut))
    return sum(len(b) for b in old_batches), old, new


def count(study, steps_) -> None:
    backend = HFBackend(steps._model(study), batch_size=study.generation.batch_size or 8,
                        token_budget=None)
    total = [0, 0]
    for step in (s for s in steps_ if s.kind == "generate"):
        rows, old, new = prompt_tokens(study, step, backend)
        total = [total[0] + old, total[1] + new]
        print(f"{step.config['benchmark']:14s} {rows:4d} rows: prompt tokens computed: old "
              f"{old:6d}, new {new:6d} ({old / new:.2f}x fewer)")
    print(f"ratio generate_prompt_tokens {total[0] / total[1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/demo.toml")
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--model", default=None, help="instead of the study's model")
    parser.add_argument("--tolerate-differences", action="store_true",
                        help="report texts that differ instead of stopping (bf16 on a GPU: "
                             "rows batched differently may round differently)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        study = spec.load(args.study)
        study = replace(study, out=Path(tmp) / "run", model=args.model or study.model)
        steps_ = plan.plan(study)
        trained = [s for s in steps_ if s.kind == "train"]
        model = models.resolve(steps._model(study))
        for step, path in zip(trained, make_adapters(model, len(trained), Path(tmp) / "lora")):
            c = step.config
            key = f"vim:{c['target']}" if c["method"] == "vim" else f"benign:{c['dataset']}"
            target = steps.adapter_dir(study, key, step.id)
            target.parent.mkdir(parents=True, exist_ok=True)
            Path(path).rename(target)
        count(study, steps_)
        if args.count_only:
            return
        # A step carries its generation settings: each side runs the steps of its own plan
        # (the train steps, hence the adapters, are the same in both).
        old = replace(study, generation=study.generation.changed(**OLD))
        sides = {side: (s, {g.name: g for g in plan.plan(s) if g.kind == "generate"})
                 for side, s in (("old", old), ("new", study))}
        total = {"old": 0.0, "new": 0.0}
        print(f"{args.study}: {len(study.system_keys())} systems, batch size "
              f"{study.generation.batch_size or 8}; machine shared with other jobs")
        for n, step in enumerate(s for s in steps_ if s.kind == "generate"):
            seconds, outputs = {}, {}
            for side in (("old", "new") if n % 2 == 0 else ("new", "old")):
                side_study, side_steps = sides[side]
                out = Path(tmp) / side / step.id
                out.mkdir(parents=True)
                start = time.perf_counter()
                steps.generate(side_steps[step.name], side_study, out, progress=False)
                seconds[side] = time.perf_counter() - start
                outputs[side] = texts(out / "generations.jsonl")
            differ = sum(outputs["old"][k] != outputs["new"][k] for k in outputs["old"])
            if differ and not args.tolerate_differences:
                raise SystemExit(f"{step.id}: {differ} of {len(outputs['old'])} texts differ")
            for side in total:
                total[side] += seconds[side]
            same = f"{differ} texts differ" if differ else "same texts"
            print(f"{step.config['benchmark']:14s} {len(outputs['new']):4d} rows: old "
                  f"{seconds['old']:7.1f} s, new {seconds['new']:7.1f} s, {same}")
        print(f"all four: old {total['old']:.1f} s, new {total['new']:.1f} s")
        print(f"ratio generate_workload {total['old'] / total['new']:.2f}")
        alignment_check(sides, Path(tmp))


def alignment_check(sides: dict, tmp: Path) -> None:
    """The study's alignment step (every subject asked the questionnaire) on both sides, the
    new one first: the answers' probabilities through the prefix cache or not."""
    seconds, measured = {}, {}
    for side in ("new", "old"):
        side_study, _ = sides[side]
        step = next(s for s in plan.plan(side_study) if s.kind == "alignment")
        out = tmp / side / step.id
        out.mkdir(parents=True)
        start = time.perf_counter()
        steps.alignment(step, side_study, out, progress=False)
        seconds[side] = time.perf_counter() - start
        measured[side] = pd.read_csv(out / "measured_profiles.csv")
    numbers = measured["new"].select_dtypes("number").to_numpy()
    if not np.allclose(numbers, measured["old"].select_dtypes("number").to_numpy(), atol=1e-4,
                       equal_nan=True):
        raise SystemExit("alignment check: the measured profiles differ")
    print(f"alignment check {len(measured['new'])} rows: old {seconds['old']:.1f} s, new "
          f"{seconds['new']:.1f} s, same measured profiles (within 1e-4)")
    print(f"ratio alignment_check {seconds['old'] / seconds['new']:.2f}")


if __name__ == "__main__":
    main()
