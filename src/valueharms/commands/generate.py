"""``valueharms generate``: systems x a benchmark -> a resumable JSONL of generations."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ..config import STOP_POLICIES
from ..errors import InputError
from . import add_data_dir, add_model_args, model_options, positive


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate answers of systems to a safety benchmark")
    p.add_argument("--system", action="append", required=True, metavar="KEY",
                   help="vanilla, vim:<target>, prompt:<target> or benign:<dataset>, optionally "
                        "+safety, +value:<V> or +dual:<V>; repeat for several systems (one "
                        "model load serves them all)")
    p.add_argument("--benchmark", required=True, help="rtp, holisticbiasr, hexphi, beavertails, advbench")
    p.add_argument("--subset", default=None, help="e.g. holisticbiasr: all | dispreferred")
    p.add_argument("--limit", type=positive(int), default=None, help="only the first N items")
    p.add_argument("--categories", nargs="+", default=None, metavar="CATEGORY",
                   help="only these categories (see `valueharms benchmarks categories B`)")
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
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=("hf", "vllm", "openai"), default="hf")
    g.add_argument("--batch-size", type=positive(int), default=None,
                   help="rows per batch (hf default 8, vllm 256, openai 4 x concurrency)")
    g.add_argument("--form", choices=("auto", "chat", "base"), default="auto",
                   help="chat template, plain text, or chat when the model has a template")
    g.add_argument("--device", default=None, help="hf: cpu, cuda, cuda:1 ...")
    add_model_args(g)
    g.add_argument("--base-url", default=None, help="openai: the endpoint (default api.openai.com)")
    g.add_argument("--api-mode", choices=("chat", "completions"), default="chat")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="openai: environment variable holding the key")
    g.add_argument("--concurrency", type=positive(int), default=8, help="openai: requests in flight")
    g.add_argument("--qps", type=positive(float, zero=True), default=5.0,
                   help="openai: requests per second (0 = unlimited)")
    g.add_argument("--attempts", type=positive(int), default=6, help="openai: tries per request")
    g.add_argument("--backoff", type=positive(float, zero=True), default=1.0,
                   help="openai: first retry wait in seconds (doubles each time)")
    g.add_argument("--timeout", type=positive(float), default=60.0, help="openai: seconds per request")
    g = p.add_argument_group("decoding (default: the benchmark's paper settings)")
    g.add_argument("--temperature", type=positive(float, zero=True), default=None,
                   help="0 = greedy")
    g.add_argument("--top-p", type=positive(float), default=None)
    g.add_argument("--samples", type=positive(int), default=None, help="samples per prompt")
    g.add_argument("--max-new-tokens", type=positive(int), default=None)
    g.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop string (repeatable; replaces the benchmark's)")
    g.add_argument("--stops", choices=STOP_POLICIES, default="benchmark",
                   help="benchmark: the same stops for every system (default); reference: the "
                        "paper's code's per-arm stops (vanilla at newline or '.' on rtp and "
                        "holisticbiasr, prompt: at newline, vim/benign: none), replacing --stop")
    g.add_argument("--repetition-penalty", type=positive(float), default=None,
                   help="1.0 = none (default, as the paper's vLLM runs); its earlier "
                        "transformers runs used 1.2")
    g.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_dir(p)
    p.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from .. import benchmarks, targets
    from ..generate import make_backend
    from ..generate.run import generate

    # Everything is checked before the model loads.
    bench = benchmarks.get(args.benchmark)
    decoding = _decoding(args, bench.decoding)
    model, model_args = model_options(args, args.backend)
    extra = targets.read_profiles(args.profiles) if args.profiles else []
    chosen = _systems(args, extra)
    profiles = {p.name: p for p in extra}
    items = benchmarks.load_items(args.benchmark, args.subset, args.data_dir, args.limit,
                                  args.categories)
    if not items:
        raise InputError(f"--benchmark {args.benchmark}: no items selected")
    backend = make_backend(args.backend, model, **_backend_options(args, model_args))
    summary = generate(chosen, items, backend, args.out, decoding=decoding, profiles=profiles,
                       data_dir=args.data_dir, progress=not args.no_progress, stops=args.stops)
    print(f"{args.out}: {summary.written} generations written, {summary.already_done} already "
          f"there, {summary.planned} planned")
    if summary.failed:
        sys.stderr.write(f"valueharms: {summary.failed} generations failed (listed in "
                         f"{summary.failures}); rerun the same command to retry them\n")
        return 1
    return 0


def _decoding(args: argparse.Namespace, default):
    if args.top_p is not None and args.top_p > 1:
        raise InputError(f"--top-p {args.top_p}: must be in (0, 1]")
    changes = {k: v for k, v in (("temperature", args.temperature), ("top_p", args.top_p),
                                 ("samples", args.samples),
                                 ("max_new_tokens", args.max_new_tokens),
                                 ("repetition_penalty", args.repetition_penalty)) if v is not None}
    if args.stop is not None:
        changes["stop"] = tuple(s for s in args.stop if s)
    return replace(default, seed=args.seed, **changes)


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


def _backend_options(args: argparse.Namespace, model_args: dict) -> dict:
    if args.backend == "openai":
        return dict(base_url=args.base_url, mode=args.api_mode, api_key_env=args.api_key_env,
                    concurrency=args.concurrency, qps=args.qps, attempts=args.attempts,
                    backoff=args.backoff, timeout=args.timeout, batch_size=args.batch_size)
    options = dict(form=args.form, model_args=model_args)
    if args.batch_size:
        options["batch_size"] = args.batch_size
    if args.backend == "hf":
        options["device"] = args.device
    return options
