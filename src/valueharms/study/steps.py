"""What each kind of step does. A runner reads its inputs from its dependencies' folders and
writes into its own folder ``out``; the executor writes the manifest once it returns.
``progress``: show the step's own progress bars (local runs; Ray workers' output is not shown)."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..files import atomic_write_text
from ..systems import SystemKey
from .plan import Step
from .spec import Study

ADAPTER = "adapter"  # a train step's adapter folder (VIM: its stage2/ is the aligned model)


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
    from ..align.trainer import run_benign, run_vim
    from ..config import BenignOptions, VimOptions

    c = step.config
    say = lambda message: print(f"  [{step.name}] {message}", flush=True)  # noqa: E731
    if c["method"] == "vim":
        run_vim(_model(study), _target(study, c["target"]), out / ADAPTER,
                VimOptions(**{k: c[k] for k in VimOptions.model_fields if k in c}),
                seed=study.seed, data_dir=study.data_dir, progress=progress, say=say)
    else:
        run_benign(_model(study), c["dataset"], out / ADAPTER,
                   BenignOptions(**{k: c[k] for k in BenignOptions.model_fields if k in c}),
                   seed=study.seed, data_dir=study.data_dir, progress=progress, say=say)


def generate(step: Step, study: Study, out: Path, progress: bool) -> None:
    """A generate step: its systems answer one benchmark's items."""
    from .. import systems
    from ..config import BenchmarkOptions, GenerationOptions
    from ..generate.run import run_benchmark

    c = step.config
    # The benchmark's own decoding keys win over the study's [decoding].
    options = BenchmarkOptions(**{**c["decoding"], **c["options"]})
    backend = GenerationOptions(**c["generation"])
    if backend.backend == "hf" and backend.device is None:
        backend = backend.changed(device=c.get("device"))
    chosen = systems.with_adapters(
        c["systems"], lambda key: adapter_dir(study, key.base, c["adapters"][key.base])
        if key.base in c["adapters"] else None,
        data_dir=study.data_dir, extra=list(study.targets))
    summary = run_benchmark(c["benchmark"], chosen, out / "generations.jsonl",
                            model=_model(study), options=options, backend=backend,
                            seed=study.seed, profiles={t.name: t for t in study.targets},
                            data_dir=study.data_dir, progress=progress, stops=backend.stops)
    if summary.failed:
        # Not done: the next run retries only the failed rows.
        raise RuntimeError(f"{step.id}: {summary.failed} generations failed (see "
                           f"{summary.failures}); run the study again to retry them")


def score(step: Step, study: Study, out: Path, progress: bool) -> None:
    """A score step: the benchmark's scorer over its generate step's file."""
    from ..score.run import run_scorer

    source = study.out / "steps" / step.deps[0] / "generations.jsonl"
    summary = run_scorer(source, out / "scores.jsonl", step.config["scorer"],
                         step.config["options"], retry=("failed",), progress=progress)
    print(f"  [{step.name}] {summary.line()}", flush=True)


def alignment(step: Step, study: Study, out: Path, progress: bool) -> None:
    """Questionnaire answers of the base model and of every VIM and prompting system, each
    compared with every target (the cross table: a system should sit closest to its own)."""
    from ..align import check
    from ..generate import make_backend

    c = step.config
    backend = make_backend("hf", _model(study), device=c.get("device"),
                           batch_size=study.generation.batch_size or 8)
    adapters = {key: str(adapter_dir(study, key, sid)) for key, sid in c["adapters"].items()}
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
    from ..config import MetricsOptions

    c = step.config
    options = MetricsOptions(baseline=c["baseline"], **({"resamples": c["resamples"]}
                                                        if "resamples" in c else {}))
    analyze.run_metrics([study.out / "steps" / d / "scores.jsonl" for d in step.deps], out,
                        options, seed=c["seed"], data_dir=study.data_dir,
                        profiles=list(study.targets))


def report(step: Step, study: Study, out: Path, progress: bool) -> None:
    """The report step: HTML and Markdown from the metrics and measured profiles."""
    from ..report import build_report

    metrics_dir = study.out / "steps" / step.deps[0]
    measured: list[str | os.PathLike] = [study.out / "steps" / d / "measured_profiles.csv"
                                         for d in step.deps[1:]]
    path = build_report(metrics_dir, study.out / "report", measured=measured,
                        profiles=list(study.targets), data_dir=study.data_dir,
                        baseline=step.config["baseline"],
                        title=f"valueharms report: {study.name}")
    atomic_write_text(out / "report.txt", f"{path}\n")


RUNNERS: dict[str, Callable[[Step, Study, Path, bool], None]] = {
    "train": train, "generate": generate, "score": score, "alignment": alignment,
    "metrics": metrics, "report": report}

