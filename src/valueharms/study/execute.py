"""Run a plan: skip done steps, run the rest locally or as Ray tasks, record a manifest each."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .. import console, profile, provenance
from ..files import atomic_write_text, versions
from .plan import MANIFEST, Step, outputs, plan
from .spec import Study
from .steps import CACHE_FILE, RUNNERS, STEP_CACHE


def run_step(step: Step, study: Study, progress: bool = False, label: str | None = None,
             verbose: bool = False) -> str:
    """Run one step in its own folder; the manifest, written last, marks it done. What the
    step prints goes to its log.txt (``verbose``: to the terminal too); ``label``, when
    given, is printed as the step starts and names its progress bar."""
    out = step.out_dir(study)
    if step.done(study):
        return step.id
    if (out / MANIFEST).exists():  # its outputs went missing: no longer a record of them
        say(f"{step.id}: outputs missing or changed since its {MANIFEST} was written; "
            f"running the step again")
        (out / MANIFEST).unlink()
    out.mkdir(parents=True, exist_ok=True)
    if label:  # on a terminal no newline: the step's bar, then its "done" line, overwrite it;
        # a pipe or a log file (CI, scripts watching the run) gets the start as a line of its own
        whole_line = verbose or not sys.stderr.isatty()
        print(f"{label} ...", end="\n" if whole_line else "", file=sys.stderr, flush=True)
    start = time.time()
    timer = profile.current()
    timer.reset()
    with console.step_output(out / console.LOG, label or step.id, verbose):
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
    """Every planned step and whether it is done."""
    return [(step, step.done(study)) for step in plan(study)]


def run_local(study: Study, verbose: bool = False) -> None:
    """Every step not yet done, in plan order; one line per step, which its progress bar
    overwrites while it runs (the step's other output goes to its log.txt)."""
    steps = plan(study)
    todo = [s for s in steps if not s.done(study)]
    done = len(steps) - len(todo)
    say(f"{study.name}: {len(steps)} steps, {done} already done")
    for n, step in enumerate(todo, done + 1):
        start = time.time()
        label = f"[{n}/{len(steps)}] {step.id}"
        run_step(step, study, progress=True, label=label, verbose=verbose)
        say(f"\r{label} done in {time.time() - start:.1f} s")


def say(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


# Passed to Ray workers through the task's runtime_env (workers on other nodes do not inherit
# the driver's environment); the values are never written to a file or a log by valueharms.
FORWARDED_PREFIXES = ("VALUEHARMS_",)
FORWARDED = ("HF_TOKEN", "HF_HOME", "HF_HUB_OFFLINE", "OPENAI_API_KEY", "PERSPECTIVE_API_KEY")


def ray_env(study: Study) -> dict[str, str]:
    """The environment variables a remote step needs: VALUEHARMS_*, the Hub token and the API
    keys (those the study names too), as set in the driver."""
    names = set(FORWARDED) | set(study.required_keys())
    env = {k: v for k, v in os.environ.items()
           if k in names or k.startswith(FORWARDED_PREFIXES)}
    env[STEP_CACHE] = "1"
    return env


def step_resources(step: Step, gpus: dict[str, float], cluster_gpus: float) -> dict:
    """Ray options for one step: its kind's GPUs (``[ray] gpus``; 1 for GPU steps by default)
    when the cluster has GPUs, else one CPU."""
    wanted = gpus.get(step.kind, 1 if step.gpu else 0)
    return {"num_gpus": wanted} if wanted and cluster_gpus else {"num_cpus": 1}


def run_ray(study: Study, address: str | None = None, verbose: bool = False) -> None:
    """The same steps as Ray tasks. API keys and VALUEHARMS_* reach the workers through the
    runtime_env; each step's output goes to its log.txt (``verbose``: shown here too). Each
    score step caches into its own folder, merged into the driver's cache when it finishes
    (SQLite must not be shared across nodes over a network file system)."""
    import ray

    from ..score.cache import ScoreCache

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=verbose,
                 include_dashboard=False)
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    remote = ray.remote(_ray_task)
    env = {"env_vars": ray_env(study)}
    gpus = study.ray.gpus
    refs: dict[str, object] = {}
    steps = {step.id: step for step in plan(study)}
    for step in steps.values():
        if step.done(study):
            continue
        deps = [refs[d] for d in step.deps if d in refs]
        refs[step.id] = remote.options(name=step.id, runtime_env=env,
                                       **step_resources(step, gpus, cluster_gpus)
                                       ).remote(step, study, verbose, *deps)
    pending, names = list(refs.values()), {ref: sid for sid, ref in refs.items()}
    say(f"{study.name}: {len(pending)} steps submitted to Ray ({cluster_gpus:g} GPUs in the "
        f"cluster)")
    with ScoreCache(None) as cache:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(finished[0])
            except ray.exceptions.RayTaskError as exc:
                raise exc.cause from None  # the step's own error (an InputError keeps exit 2)
            step = steps[names[finished[0]]]
            if step.kind == "score":
                cache.merge(step.out_dir(study) / CACHE_FILE)
            say(f"[{len(refs) - len(pending)}/{len(refs)}] {step.id} done")


def _ray_task(step: Step, study: Study, verbose: bool, *_deps: str) -> str:
    # Ray resolves the dependency refs before calling, so the inputs exist on shared storage.
    return run_step(step, study, progress=True, verbose=verbose)  # bars: the worker's own stderr


def report_path(study: Study) -> Path:
    """Where the study's report is written."""
    return study.out / "report" / "index.html"
