"""``valueharms generate``: systems x a benchmark -> a resumable JSONL of generations."""
from __future__ import annotations

import argparse
import sys

from ..config import STOP_POLICIES, BackendOptions, BenchmarkOptions
from ..errors import InputError
from . import add_data_dir, add_options, options_from


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate answers of systems to a safety benchmark")
    p.add_argument("--system", action="append", required=True, metavar="KEY",
                   help="vanilla, vim:<target>, prompt:<target> or benign:<dataset>, optionally "
                        "+safety, +value:<V> or +dual:<V>; repeat for several systems (one "
                        "model load serves them all)")
    p.add_argument("--benchmark", required=True, help="rtp, holisticbiasr, hexphi, beavertails, advbench")
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
    add_options(p, BackendOptions, title="backend (the study's [generation] keys)")
    add_options(p, BenchmarkOptions, title="items and decoding (the study's [benchmarks.NAME] "
                "keys; decoding default: the benchmark's paper settings)")
    g = p.add_argument_group("decoding")
    g.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop string (repeatable; replaces the benchmark's)")
    g.add_argument("--stops", choices=STOP_POLICIES, default="benchmark",
                   help="benchmark: the same stops for every system (default); reference: the "
                        "paper's code's per-arm stops (vanilla at newline or '.' on rtp and "
                        "holisticbiasr, prompt: at newline, vim/benign: none), replacing --stop")
    g.add_argument("--seed", type=int, default=42, help="seed of every row (default: 42)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_dir(p)
    p.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from .. import targets
    from ..generate.run import run_benchmark

    # Everything is checked before the model loads.
    options = options_from(args, BenchmarkOptions)
    backend = options_from(args, BackendOptions)
    extra = targets.read_profiles(args.profiles) if args.profiles else []
    chosen = _systems(args, extra)
    summary = run_benchmark(args.benchmark, chosen, args.out, model=args.model, options=options,
                            backend=backend, seed=args.seed,
                            stop=tuple(s for s in args.stop if s) if args.stop is not None
                            else None,
                            profiles={p.name: p for p in extra}, data_dir=args.data_dir,
                            progress=not args.no_progress, stops=args.stops)
    print(f"{args.out}: {summary.written} generations written, {summary.already_done} already "
          f"there, {summary.planned} planned")
    if summary.failed:
        sys.stderr.write(f"valueharms: {summary.failed} generations failed (listed in "
                         f"{summary.failures}); rerun the same command to retry them\n")
        return 1
    return 0


def _systems(args: argparse.Namespace, extra) -> list:
    """The --system keys with their adapters: --adapter in order, or under --adapters-root."""
    from .. import systems

    if args.adapter and args.adapters_root:
        raise InputError("--adapter and --adapters-root: give one or the other")
    trained = [k for k in map(systems.SystemKey.parse, args.system)
               if k.kind in systems.TRAINED_KINDS]
    if args.adapter and len(args.adapter) != len(trained):
        raise InputError(f"--adapter: given {len(args.adapter)}, but {len(trained)} of the "
                         f"systems take an adapter (vim:, benign:), one --adapter each in order")
    given = iter(args.adapter)

    def adapter_of(key):
        if args.adapter:
            return next(given)
        return systems.adapter_path(key, args.adapters_root) if args.adapters_root else None

    return systems.with_adapters(args.system, adapter_of, data_dir=args.data_dir, extra=extra)
