"""Run a plan: skip done steps, run the rest locally or as Ray tasks, record a manifest each."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .. import profile, provenance
from ..io import atomic_write_text, versions
from .plan import MANIFEST, Step, outputs, plan
from .spec import Study
from .steps import RUNNERS

def run_step(step: Step, study: Study, progress: bool = False) -> str:
    """Run one step in its own folder; the manifest, written last, marks it done."""
    out = step.out_dir(study)
    if step.done(study):
        return step.id
    if (out / MANIFEST).exists():  # its outputs went missing: no longer a record of them
        say(f"{step.id}: outputs missing or changed since its {MANIFEST} was written; "
            f"running the step again")
        (out / MANIFEST).unlink()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    timer = profile.current()
    timer.reset()
    RUNNERS[step.kind](step, study, out, progress)
    if timer.enabled:
        atomic_write_text(out / "profile.json",
                          json.dumps({"step": step.id, **timer.summary(time.time() - start)}, indent=1))
    manifest = {"step": step.id, "kind": step.kind, "config": step.config, "deps": list(step.deps),
                "seed": study.seed, "versions": versions(), "started": start,
                "seconds": round(time.time() - start, 3), "outputs": outputs(out),
                "study_sha256": provenance.file_sha256(study.path),
                "environment": provenance.environment()}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, default=str))
    return step.id


def describe(study: Study) -> list[tuple[Step, bool]]:
    return [(step, step.done(study)) for step in plan(study)]


def run_local(study: Study) -> None:
    """Every step not yet done, in plan order; a line per step for the overall progress
    (each step shows its own progress too)."""
    steps = plan(study)
    todo = [s for s in steps if not s.done(study)]
    done = len(steps) - len(todo)
    say(f"{study.name}: {len(steps)} steps, {done} already done")
    for n, step in enumerate(todo, done + 1):
        start = time.time()
        say(f"[{n}/{len(steps)}] {step.id} ...")
        run_step(step, study, progress=True)
        say(f"[{n}/{len(steps)}] {step.id} done in {time.time() - start:.1f} s")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_ray(study: Study, address: str | None = None) -> None:
    """The same steps as Ray tasks; training and generation ask for a GPU when there is one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=False,
                 include_dashboard=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    remote = ray.remote(_ray_task)
    refs: dict[str, object] = {}
    for step in plan(study):
        if step.done(study):
            continue
        options = {"num_gpus": 1} if step.gpu and gpus else {"num_cpus": 1}
        deps = [refs[d] for d in step.deps if d in refs]
        refs[step.id] = remote.options(name=step.id, **options).remote(step, study, *deps)
    pending, names = list(refs.values()), {ref: sid for sid, ref in refs.items()}
    say(f"{study.name}: {len(pending)} steps submitted to Ray ({gpus:g} GPUs in the cluster)")
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        try:
            ray.get(finished[0])
        except ray.exceptions.RayTaskError as exc:
            raise exc.cause from None  # the step's own error (an InputError keeps exit code 2)
        say(f"[{len(refs) - len(pending)}/{len(refs)}] {names[finished[0]]} done")


def _ray_task(step: Step, study: Study, *_deps: str) -> str:
    # Ray resolves the dependency refs before calling, so the inputs exist on shared storage.
    return run_step(step, study)


def report_path(study: Study) -> Path:
    return study.out / "report" / "index.html"
