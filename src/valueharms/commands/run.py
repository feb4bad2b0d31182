"""``valueharms run STUDY.toml``: the whole study, from training to the report."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from ..errors import InputError


def register(sub) -> None:
    p = sub.add_parser("run", help="run a study file: train, generate, score, analyse, report",
                       description="Plan the study's steps, skip those already done, run the "
                                   "rest and print the report's path.")
    p.add_argument("study", nargs="?", help="study file (TOML), e.g. studies/demo.toml")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a study key, e.g. --set train.epochs=2 or --set "
                        "benchmarks.rtp.limit=10 (the value is read as TOML; repeatable)")
    p.add_argument("--schema", action="store_true",
                   help="print the JSON schema of study files (for editor completion) and stop")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: one step after another in this process; ray: steps as Ray "
                        "tasks (a GPU each for training and generation when the cluster has GPUs)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (default $RAY_ADDRESS, else a local instance)")
    p.add_argument("--profile", action="store_true",
                   help="write each step's time split (load, adapters, prefill, decode, train, "
                        "scoring, io, ...) to steps/<id>/profile.json (same as "
                        "VALUEHARMS_PROFILE=1)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show each step's full output (library logging, warnings, the trainer's "
                        "log) on the console too; it always goes to steps/<id>/log.txt")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (what is done, what would run) and stop")
    p.set_defaults(func=_run)


def _problems(study) -> list[str]:
    """What would stop a real run: missing data files and API keys."""
    from ..study.spec import check_data

    problems = [f"{study.path}: [scorers] need ${key}, which is not set"
                for key in study.missing_keys()]
    try:
        check_data(study)
    except InputError as exc:
        problems.append(str(exc))
    return problems


def _print_plan(study) -> None:
    from ..study.execute import describe

    rows = describe(study)
    for step, done in rows:
        print(f"{'done' if done else 'todo'}  {step.id}{'  [gpu]' if step.gpu else ''}")
    kinds = Counter(step.kind for step, done in rows if not done)
    todo = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "nothing"
    print(f"{study.name}: {_settings(study)}")
    print(f"{study.name}: {len(rows)} steps, {len(rows) - sum(kinds.values())} done; to run: "
          f"{todo}; {len(study.system_keys())} systems, {len(study.targets)} targets; "
          f"model {study.model}; output {study.out}")


def _settings(study) -> str:
    """The choices that decide what the numbers mean: items, stops, scorers, baselines."""
    from ..config import BASELINES

    benches = []
    for name, options in study.benchmarks.items():
        picked = [f"{k} {v if isinstance(v, (str, int)) else ','.join(v)}"
                  for k, v in (("subset", options.subset), ("limit", options.limit),
                               ("categories", options.categories)) if v]
        benches.append(f"{name} ({'; '.join(picked)})" if picked else name)
    baseline = study.analysis.baseline
    baselines = [baseline] if baseline in BASELINES else list(baseline)
    scorers = ", ".join(f"{b}={s}" for b, s in study.scorers.items())
    bias = f"; bias baselines {', '.join(baselines)}" if "holisticbiasr" in study.benchmarks else ""
    return (f"benchmarks {', '.join(benches)}; stops {study.generation.stops}; scorers "
            f"{scorers}{bias}")


def _run(args: argparse.Namespace) -> int:
    from ..study import execute, spec

    if args.schema:
        print(json.dumps(spec.StudyFile.model_json_schema(), indent=1))
        return 0
    if not args.study:
        raise InputError("run: a study file is needed (or --schema)")
    studies = spec.load_all(args.study, args.set)  # one per base model of [study] models
    problems = [p for study in studies for p in _problems(study)]
    notes = dict.fromkeys(note for study in studies for note in study.notes)
    if args.dry_run:
        for study in studies:
            _print_plan(study)
        for problem in dict.fromkeys(problems):
            print(f"warning: {problem}", file=sys.stderr)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    if problems:
        raise InputError(problems[0])
    for note in notes:  # once, when the run starts: never beside a bad-input error
        print(f"note: {note}", file=sys.stderr)
    if args.profile:
        from .. import profile

        os.environ[profile.ENV] = "1"  # inherited by a local Ray instance started from here
    from ..files import exclusive

    for study in studies:
        with exclusive(study.out / "study"):  # a second run of this study waits for the first
            if args.executor == "ray":
                execute.run_ray(study, args.ray_address, args.verbose)
            else:
                execute.run_local(study, args.verbose)
        print(execute.report_path(study))
    return 0
