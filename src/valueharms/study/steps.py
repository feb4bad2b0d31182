"""What each kind of step does. A runner reads its inputs from its dependencies' folders and
writes into its own folder ``out``; the executor writes the manifest once it returns.
``progress``: show the step's own progress bars (local runs; Ray workers' output is not shown)."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import fetch
from ..config import BenchmarkOptions, GenerationOptions, OptionsT
from ..files import atomic_write_text
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
    from ..align.benign import run_benign
    from ..align.vim import run_vim
    from ..config import BenignOptions, VimOptions

    c = step.config
    say = lambda message: print(f"  [{step.name}] {message}", flush=True)  # noqa: E731
    common: dict[str, Any] = dict(seed=study.seed, data_dir=study.data_dir, progress=progress,
                  model_args=study.model_args_for("hf"), say=say)
    if c["method"] == "vim":
        run_vim(_model(study), _target(study, c["target"]), out / ADAPTER,
                _options(VimOptions, c), **common)
    else:
        run_benign(_model(study), c["dataset"], out / ADAPTER, _options(BenignOptions, c),
                   **common)


def _options(model: type[OptionsT], config: dict[str, Any]) -> OptionsT:
    """The options ``model`` from the keys of a step's config that it has."""
    return model(**{k: config[k] for k in model.model_fields if k in config})


def generation_inputs(step: Step, study: Study) -> tuple[list[BenchmarkItem], list[System], Decoding]:
    """A generate step's (benchmark items, systems with their adapters, decoding)."""
    from ..generate.run import benchmark_inputs

    items, decoding = benchmark_inputs(step.config["benchmark"], _benchmark_options(step),
                                       seed=study.seed, data_dir=study.data_dir)
    return items, _systems(step, study), decoding


def _benchmark_options(step: Step) -> BenchmarkOptions:
    """The benchmark's options, with the study's [decoding] under its own decoding keys."""
    return BenchmarkOptions(**{**step.config["decoding"], **step.config["options"]})


def _systems(step: Step, study: Study) -> list[System]:
    """A generate step's systems, each with the adapter its train step made."""
    from .. import systems

    c, chosen = step.config, []
    for key in c["systems"]:
        base = SystemKey.parse(key).base
        adapter = adapter_dir(study, base, c["adapters"][base]) if base in c["adapters"] else None
        system = systems.parse_system(key, adapter, data_dir=study.data_dir,
                                      extra=list(study.targets))
        systems.require_adapter(system)
        chosen.append(system)
    return chosen


def generate(step: Step, study: Study, out: Path, progress: bool) -> None:
    """A generate step: its systems answer one benchmark's items."""
    from ..generate.run import run_benchmark

    c = step.config
    g = GenerationOptions(**c["generation"])
    summary = run_benchmark(c["benchmark"], _systems(step, study), out / "generations.jsonl",
                            model=_model(study), options=_benchmark_options(step),
                            backend=g.changed(device=c.get("device")), seed=study.seed,
                            model_args=study.model_args_for(g.backend),
                            profiles={t.name: t for t in study.targets}, data_dir=study.data_dir,
                            progress=progress, stops=g.stops,
                            origin={"study_sha256": fetch.sha256(study.path)})
    if summary.failed:
        # Not done: the next run retries only the failed rows.
        raise RuntimeError(f"{step.id}: {summary.failed} generations failed (see "
                           f"{summary.failures}); run the study again to retry them")


def score(step: Step, study: Study, out: Path, progress: bool) -> None:
    """A score step: the benchmark's scorer over its generate step's file."""
    from ..score.run import run_scorer

    source = study.out / "steps" / step.deps[0] / "generations.jsonl"
    # On a Ray worker the step caches into its own folder (one writer; the driver merges it);
    # locally, into the shared cache.
    summary = run_scorer(source, out / "scores.jsonl", step.config["scorer"],
                         step.config["options"],
                         cache_path=out / CACHE_FILE if os.environ.get(STEP_CACHE) else None,
                         retry=("failed",), progress=progress)
    print(f"  [{step.name}] {summary.line()}", flush=True)


def alignment(step: Step, study: Study, out: Path, progress: bool) -> None:
    """Questionnaire answers of the base model and of every VIM, prompting and ``adapter:``
    system, each compared with every target (the cross table: a system should sit closest to
    its own; an ``adapter:`` system has none)."""
    from .. import models
    from ..align import check
    from ..config import CheckOptions

    c = step.config
    adapters = {key: str(adapter_dir(study, key, sid)) for key, sid in c["adapters"].items()}
    adapters.update({text: models.fetch_adapter(str(SystemKey.parse(text).location))
                     for text in c["systems"] if SystemKey.parse(text).kind == "adapter"})
    subjects, trained_on = [check.Subject("vanilla")], {}
    for text in c["systems"]:
        key = SystemKey.parse(text)
        persona = _target(study, str(key.target)) if key.kind == "prompt" else None
        subjects.append(check.Subject(text, adapter=adapters.get(text), persona=persona))
        if key.kind == "vim":  # an adapter: system has no target of its own
            trained_on[text] = _target(study, str(key.target))
    options = CheckOptions(instrument=c.get("instrument", "pvq40"),
                           method=c.get("method", "generate"), train_limit=c.get("limit"),
                           batch_size=study.generation.batch_size or 8, device=c.get("device"),
                           prefix_cache=c.get("prefix_cache", True))
    check.run_alignment(_model(study), subjects, list(study.targets), options,
                        model_args=study.model_args_for("hf"), trained_on=trained_on,
                        data_dir=study.data_dir, out=out, progress=progress)


def metrics(step: Step, study: Study, out: Path, progress: bool) -> None:
    """The metrics step: every score file into the metrics and analysis tables."""
    from ..analyze import run_metrics
    from ..config import MetricsOptions

    c = step.config
    options = _options(MetricsOptions, c)
    run_metrics([study.out / "steps" / d / "scores.jsonl" for d in step.deps], out, options,
                seed=c["seed"], data_dir=study.data_dir, profiles=list(study.targets))


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

