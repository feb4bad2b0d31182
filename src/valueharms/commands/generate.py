"""``valueharms generate``: systems x a benchmark -> a resumable JSONL of generations."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ..config import BenchmarkOptions, DecodingOptions, GenerationOptions
from ..errors import InputError
from . import add_data_dir, add_model_args, add_options, model_options, options_from

# [generation] keys that are no flag here: engine settings are model args (--model-arg), and
# a command runs its systems in one go.
_NOT_FLAGS = ("dtype", "max_loras", "systems_per_step")


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate answers of systems to a safety benchmark")
    p.add_argument("--system", action="append", required=True, metavar="KEY",
                   help="vanilla, vim:<target>, prompt:<target> or benign:<dataset>, optionally "
                        "+safety, +value:<V> or +dual:<V>; repeat for several systems (one "
                        "model load serves them all)")
    p.add_argument("--benchmark", required=True, help="rtp, holisticbiasr, hexphi, beavertails, advbench")
    add_options(p, BenchmarkOptions, skip=tuple(DecodingOptions.model_fields))
    p.add_argument("--out", required=True, help="JSONL file; appended, a rerun resumes it")
    p.add_argument("--model", default=None,
                   help="Hugging Face id or path (default: the embedded model); for the openai "
                        "backend, the served model's name")
    p.add_argument("--adapter", action="append", default=[], metavar="DIR",
                   help="LoRA directory, once per vim:/benign: system, in the order of --system")
    p.add_argument("--adapters-root", default=None, metavar="DIR",
                   help="find adapters as a study keeps them: DIR/vim/<target>/stage2, "
                        "DIR/benign/<dataset>")
    p.add_argument("--profiles", default=None, metavar="FILE",
                   help="your own target profiles (.csv/.json/.toml) for prompt:/vim: systems")
    add_options(p, GenerationOptions, skip=_NOT_FLAGS, title="backend (the study's [generation] keys)")
    add_model_args(p)
    add_options(p, DecodingOptions, title="decoding (default: the benchmark's paper settings)")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop string (repeatable; replaces the benchmark's)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_dir(p)
    p.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from .. import targets
    from ..generate.run import run_benchmark

    options = options_from(args, BenchmarkOptions)
    generation = options_from(args, GenerationOptions)
    model, model_args = model_options(args, generation.backend)
    extra = targets.read_profiles(args.profiles) if args.profiles else []
    summary = run_benchmark(args.benchmark, _systems(args, extra), args.out, model=model,
                            options=options, backend=generation, seed=args.seed,
                            stop=tuple(s for s in args.stop if s) if args.stop is not None else None,
                            model_args=model_args, profiles={p.name: p for p in extra},
                            data_dir=args.data_dir, progress=not args.no_progress,
                            stops=generation.stops)
    print(f"{args.out}: {summary.written} generations written, {summary.already_done} already "
          f"there, {summary.planned} planned")
    if summary.failed:
        sys.stderr.write(f"valueharms: {summary.failed} generations failed (listed in "
                         f"{summary.failures}); rerun the same command to retry them\n")
        return 1
    return 0


def _systems(args: argparse.Namespace, extra) -> list:
    from .. import systems

    if args.adapter and args.adapters_root:
        raise InputError("--adapter and --adapters-root: give one or the other")
    parsed = [systems.parse_system(key, data_dir=args.data_dir, extra=extra) for key in args.system]
    needing = [s for s in parsed if s.kind in systems.TRAINED_KINDS]
    if args.adapter and len(args.adapter) != len(needing):
        raise InputError(f"--adapter: given {len(args.adapter)}, but {len(needing)} of the "
                         f"systems take an adapter (vim:, benign:), one --adapter each in order")
    given = iter(args.adapter)
    out = []
    for system in parsed:
        if system.kind in systems.TRAINED_KINDS:
            path = (next(given) if args.adapter else
                    systems.adapter_path(system, args.adapters_root) if args.adapters_root else None)
            system = replace(system, adapter=str(path) if path is not None else None)
        systems.require_adapter(system)
        out.append(system)
    return out
