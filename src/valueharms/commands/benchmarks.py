"""``valueharms benchmarks``: what each safety benchmark holds."""
from __future__ import annotations

import argparse

from .. import benchmarks
from . import add_data_dir, add_subcommands


def register(sub) -> None:
    parser = sub.add_parser("benchmarks", help="the safety benchmarks: list, categories")
    cmds = add_subcommands(parser, "benchmarks_command")

    p = cmds.add_parser("list", help="one line per benchmark and subset: name, subset, count")
    p.add_argument("--verbose", action="store_true",
                   help="also print the prompt form and the default decoding")
    add_data_dir(p)
    p.set_defaults(func=_list)

    p = cmds.add_parser("categories", help="the categories of one benchmark, one a line")
    p.add_argument("benchmark", choices=list(benchmarks.BENCHMARKS))
    add_data_dir(p)
    p.set_defaults(func=_categories)


def _list(args: argparse.Namespace) -> int:
    for name, bench in benchmarks.BENCHMARKS.items():
        for subset in bench.subsets:
            count = len(benchmarks.load_items(name, subset, args.data_dir))
            line = f"{name} {subset} {count}"
            if args.verbose:
                d = bench.decoding
                line += (f"  form={bench.form} samples={d.samples} max_new_tokens="
                         f"{d.max_new_tokens} temperature={d.temperature} top_p={d.top_p} "
                         f"stop={list(d.stop)!r}")
            print(line, flush=True)
    return 0


def _categories(args: argparse.Namespace) -> int:
    for category in benchmarks.categories_of(args.benchmark, args.data_dir):
        print(category)
    return 0
