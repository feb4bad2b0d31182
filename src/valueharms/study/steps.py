"""What each kind of step does. A runner reads its inputs from its dependencies' folders and
writes into its own folder ``out``; the executor writes the manifest once it returns.
``progress``: show the step's own progress bars (local runs; Ray workers' output is not shown)."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .. import profile, provenance
from ..io import atomic_write_text
from ..records import BenchmarkItem, Decoding, System
from ..systems import SystemKey
from .plan import Step
from .spec import Study

ADAPTER = "adapter"  # a train step's adapter folder (VIM: its stage2/ is the aligned model)
STEP_CACHE = "VALUEHARMS_STEP_CACHE"  # set on Ray workers: score steps cache in their folder
CACHE_FILE = "cache.sqlite"


def _model(study: Study) -> str | None:
    return None if study.model == "default" else study.model


def _target(study: Study, name: str):
    return next(t for t in study.targets if t.name == name)


def adapter_dir(study: Study, system: str, train_step_id: str) -> Path:
    """The adapter a train step made for ``system`` (VIM: its stage 2)."""
    trained = study.out / "steps" / train_step_id / ADAPTER
    return Path(str(SystemKey.parse(system).adapter_dir(trained)))


def train(step: Step, study: Study, out: Path, progress: bool) -> None:
    """A train step: a VIM run for one target, or a benign fine-tune."""
    from ..align import benign
    from ..align.trainer import train_lora, train_vim
    from ..config import BenignOptions, VimOptions, train_config

    c = step.config
    say = lambda message: print(f"  [{step.name}] {message}", flush=True)  # noqa: E731
    if c["method"] == "vim":
        vim = VimOptions(**{k: c[k] for k in VimOptions.model_fields if k in c})
        train_vim(_model(study), _target(study, c["target"]), out / ADAPTER,
                  train_config(vim, seed=study.seed, progress=progress), data_dir=study.data_dir,
                  limit=vim.limit, threshold=vim.threshold, strategy=vim.strategy,
                  seed=study.seed, model_args=study.model_args_for("hf"), say=say)
        return
    options = BenignOptions(**{k: c[k] for k in BenignOptions.model_fields if k in c})
    data = benign.load(c["dataset"], data_file=options.data_files.get(c["dataset"]),
                       data_dir=study.data_dir, limit=options.limit)
    train_lora(_model(study), data.train, data.valid, out / ADAPTER,
               train_config(options, seed=study.seed, progress=progress),
               model_args=study.model_args_for("hf"), say=say)


def generation_inputs(step: Step, study: Study) -> tuple[list[BenchmarkItem], list[System], Decoding]:
    """A generate step's (benchmark items, systems with their adapters, decoding)."""
    from .. import benchmarks, systems
    from ..config import BenchmarkOptions

    c = step.config
    bench = benchmarks.get(c["benchmark"])
    options = BenchmarkOptions(**c["options"])
    overrides = {**c["decoding"], **options.decoding().set_values()}
    decoding = replace(bench.decoding, seed=study.seed, **overrides)
    items = benchmarks.load_items(c["benchmark"], options.subset, study.data_dir,
                                  options.limit, list(options.categories or []) or None)
    chosen = []
    for key in c["systems"]:
        base = SystemKey.parse(key).base
        adapter = adapter_dir(study, base, c["adapters"][base]) if base in c["adapters"] else None
        system = systems.parse_system(key, adapter, data_dir=study.data_dir,
                                      extra=list(study.targets))
        systems.require_adapter(system)
        chosen.append(system)
    return items, chosen, decoding


def generate(step: Step, study: Study, out: Path, progress: bool) -> None:
    """A generate step: its systems answer one benchmark's items."""
    from ..config import GenerationOptions
    from ..generate import make_backend
    from ..generate.run import generate as run_generation

    c = step.config
    items, chosen, decoding = generation_inputs(step, study)
    g = GenerationOptions(**c["generation"])
    backend_options = g.for_backend()
    if g.backend == "hf":
        backend_options["device"] = c.get("device")
    if g.backend != "openai":
        backend_options["model_args"] = study.model_args_for(g.backend)
    with profile.current().span("load"):
        backend = make_backend(g.backend, _model(study), **backend_options)
    summary = run_generation(chosen, items, backend, out / "generations.jsonl", decoding=decoding,
                             profiles={t.name: t for t in study.targets},
                             data_dir=study.data_dir, progress=progress,
                             stops=g.stops,
                             origin={"study_sha256": provenance.file_sha256(study.path)})
    if summary.failed:
        # Not done: the next run retries only the failed rows.
        raise RuntimeError(f"{step.id}: {summary.failed} generations failed (see "
                           f"{summary.failures}); run the study again to retry them")


def score(step: Step, study: Study, out: Path, progress: bool) -> None:
    """A score step: the benchmark's scorer over its generate step's file."""
    from .. import score as scoring
    from ..score.cache import ScoreCache
    from ..score.run import score_file

    timer = profile.current()
    with timer.span("load"):
        scorer = scoring.get_scorer(step.config["scorer"], **step.config["options"])
    source = study.out / "steps" / step.deps[0] / "generations.jsonl"
    # On a Ray worker the step caches into its own folder (one writer; the driver merges it);
    # locally, into the shared cache.
    with ScoreCache(out / CACHE_FILE if os.environ.get(STEP_CACHE) else None) as cache, \
            timer.span("scoring"):
        summary = score_file(source, out / "scores.jsonl", scorer, cache=cache,
                             retry=("failed",), progress=progress)
    scorer.close()
    print(f"  [{step.name}] {summary.line()}", flush=True)


def alignment(step: Step, study: Study, out: Path, progress: bool) -> None:
    """Questionnaire answers of the base model and of every VIM and prompting system, each
    compared with every target (the cross table: a system should sit closest to its own)."""
    from ..align import check
    from ..generate import make_backend

    c = step.config
    timer = profile.current()
    with timer.span("load"):
        backend = make_backend("hf", _model(study), device=c.get("device"),
                               batch_size=study.generation.batch_size or 8,
                               model_args=study.model_args_for("hf"))
    adapters = {key: str(adapter_dir(study, key, sid)) for key, sid in c["adapters"].items()}
    with timer.span("adapters"):
        backend.load_adapters(sorted(adapters.values()))
    subjects, trained_on = [check.Subject("vanilla")], {}
    for text in c["systems"]:
        key = SystemKey.parse(text)
        target = _target(study, str(key.target))
        subjects.append(check.Subject(text, adapter=adapters.get(text),
                                      persona=target if key.kind == "prompt" else None))
        if key.kind == "vim":
            trained_on[text] = target
    result = check.run_check(backend, subjects, list(study.targets),
                             instrument=c.get("instrument", "pvq40"),
                             method=c.get("method", "generate"), trained_on=trained_on,
                             data_dir=study.data_dir, train_limit=c.get("limit"))
    check.write(result, out)


def metrics(step: Step, study: Study, out: Path, progress: bool) -> None:
    """The metrics step: every score file into the metrics and analysis tables."""
    from .. import analyze
    from ..analyze.metrics import load_scores, measure

    files = [study.out / "steps" / d / "scores.jsonl" for d in step.deps]
    found = measure(load_scores(files), step.config["baseline"], seed=step.config["seed"])
    analyze.write(analyze.analyse(found.table, study.data_dir, list(study.targets), found.units,
                                  step.config["seed"]), out)


def report(step: Step, study: Study, out: Path, progress: bool) -> None:
    """The report step: HTML and Markdown from the metrics and measured profiles."""
    from ..analyze.samples import samples_table
    from ..report import build_report

    metrics_dir = study.out / "steps" / step.deps[0]
    measured = [study.out / "steps" / d / "measured_profiles.csv" for d in step.deps[1:]]
    samples = samples_table(study.out / "steps", study.data_dir, list(study.targets))
    path = build_report(metrics_dir, study.out / "report", measured=measured, samples=samples,
                        profiles=list(study.targets), data_dir=study.data_dir,
                        baseline=step.config["baseline"],
                        title=f"valueharms report: {study.name}")
    atomic_write_text(out / "report.txt", f"{path}\n")


RUNNERS: dict[str, Callable[[Step, Study, Path, bool], None]] = {
    "train": train, "generate": generate, "score": score, "alignment": alignment,
    "metrics": metrics, "report": report}

