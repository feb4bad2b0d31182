"""Run a plan: skip done steps, run the rest locally or as Ray tasks, record a manifest each."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .. import console, fetch, profile, provenance
from ..errors import InputError
from ..files import atomic_write_text
from ..remote import OPENAI_KEY_ENV, PERSPECTIVE_KEY_ENV
from .plan import MANIFEST, Step, outputs, plan
from .spec import Study
from .steps import CACHE_FILE, RUNNERS, STEP_CACHE


def run_step(step: Step, study: Study, threads: int, progress: bool = False,
             label: str | None = None, verbose: bool = False, share: bool = False) -> str:
    """Run one step in its own folder with ``threads`` CPU threads (:func:`step_threads`);
    the manifest, written last, marks it done. What the step prints goes to its log.txt
    (``verbose``: to the terminal too); ``label``, when given, is printed as the step starts
    and names its progress bar. ``share``: also keep the bar in the step folder's progress
    file while it runs, for a driver elsewhere to show."""
    import torch

    out = step.out_dir(study)
    if step.done(study):
        return step.id
    torch.set_num_threads(threads)
    if (out / MANIFEST).exists():  # its outputs went missing: no longer a record of them
        say(f"{step.id}: outputs missing or changed since its {MANIFEST} was written; "
            f"running the step again")
        (out / MANIFEST).unlink()
    out.mkdir(parents=True, exist_ok=True)
    # On a terminal the start line has no newline: the step's bar, then its "done" line,
    # overwrite it; a pipe or a log file (CI, scripts watching the run) gets it whole.
    open_line = bool(label) and not verbose and sys.stderr.isatty()
    if label:
        print(f"{label} ...", end="" if open_line else "\n", file=sys.stderr, flush=True)
    start = time.time()
    timer = profile.current()
    timer.reset()
    try:
        with console.step_output(out / console.LOG, label or step.id, verbose,
                                 share=out / console.PROGRESS if share else None):
            RUNNERS[step.kind](step, study, out, progress)
    except BaseException as exc:
        if open_line:
            print(file=sys.stderr, flush=True)  # the error starts a line of its own
        if isinstance(exc, InputError):  # one line naming the step; the traceback is in log.txt
            raise InputError(f"{step.id}: {exc} (details: {out / console.LOG})") from None
        raise
    if timer.enabled:
        atomic_write_text(out / "profile.json",
                          json.dumps({"step": step.id, **timer.summary(time.time() - start)}, indent=1))
    environment = provenance.environment()
    manifest = {"step": step.id, "kind": step.kind, "config": step.config, "deps": list(step.deps),
                "seed": study.seed, "versions": environment["versions"], "started": start,
                "seconds": round(time.time() - start, 3), "threads": threads,
                "outputs": outputs(out),
                "study_sha256": fetch.sha256(study.path),
                "environment": environment}
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
    threads = step_threads(study)
    for n, step in enumerate(todo, done + 1):
        start = time.time()
        label = f"[{n}/{len(steps)}] {step.id}"
        run_step(step, study, threads, progress=True, label=label, verbose=verbose)
        say(f"\r{label} done in {time.time() - start:.1f} s")


def step_threads(study: Study) -> int:
    """The CPU threads every step runs with: ``[study] threads``, else what this process (the
    driver) has, i.e. torch's default or $OMP_NUM_THREADS. Decided here, not in the step's
    process, because Ray starts its workers with one thread (OMP_NUM_THREADS=1) and float
    sums split over a different number of threads round differently: trained adapters, and so
    every generation after them, would differ from a local run's."""
    import torch

    return study.threads or torch.get_num_threads()


def say(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


# Settings a Ray worker needs from the driver (workers on other nodes do not inherit its
# environment): passed in the task's runtime_env.
FORWARDED_PREFIXES = ("VALUEHARMS_",)
FORWARDED = ("HF_HOME", "HF_HUB_OFFLINE")
# Secrets travel as a task argument instead, set in the worker's environment for the step:
# Ray logs every runtime_env in plain text (runtime_env_agent.log on each node, and the state
# API shows it), so a key in the runtime_env would end up in a file.
SECRETS = ("HF_TOKEN", OPENAI_KEY_ENV, PERSPECTIVE_KEY_ENV)


def ray_env(study: Study, threads: int) -> dict[str, str]:
    """The runtime_env variables of a remote step: VALUEHARMS_* and the Hub settings as set in
    the driver; OMP_NUM_THREADS as the step's ``threads`` (Ray would set 1), for the libraries
    that read it when they load. No secrets (:func:`ray_secrets`)."""
    env = {k: v for k, v in os.environ.items()
           if k in FORWARDED or k.startswith(FORWARDED_PREFIXES)}
    env[STEP_CACHE] = "1"
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def ray_secrets(study: Study) -> dict[str, str]:
    """The Hub token and the API keys (those the study's scorers name too) set in the driver,
    for :func:`_ray_task` to put in the worker's environment. valueharms never writes them to
    a file or a log."""
    names = set(SECRETS) | set(study.required_keys())
    return {k: v for k, v in os.environ.items() if k in names}


def step_resources(step: Step, gpus: dict[str, float], cluster_gpus: float,
                   cpus: float = 1) -> dict:
    """Ray options for one step: its kind's GPUs (``[ray] gpus``; 1 for GPU steps by default)
    when the cluster has GPUs, else ``cpus`` CPUs (its threads, at most a node's CPUs)."""
    wanted = gpus.get(step.kind, 1 if step.gpu else 0)
    return {"num_gpus": wanted} if wanted and cluster_gpus else {"num_cpus": cpus}


def run_ray(study: Study, address: str | None = None, verbose: bool = False) -> None:
    """The same steps as Ray tasks, with the driver's CPU thread count. VALUEHARMS_* reach the
    workers through the runtime_env, API keys as a task argument; each step's output goes to
    its log.txt (``verbose``: shown here too). Each
    score step caches into its own folder, merged into the driver's cache when it finishes
    (SQLite must not be shared across nodes over a network file system)."""
    import ray

    from ..score.cache import ScoreCache

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=verbose,
                 include_dashboard=False)
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    threads = step_threads(study)
    # A step claims a CPU per thread, so Ray runs no more of them at once than a node has cores;
    # never more than the largest node has (the task could not be placed at all).
    cpus = min(threads, max(n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"]))
    remote = ray.remote(_ray_task)
    env = {"env_vars": ray_env(study, threads)}
    secrets = ray_secrets(study)  # an argument: in the task's message, not in its runtime_env
    gpus = study.ray.gpus
    refs: dict[str, object] = {}
    steps = {step.id: step for step in plan(study)}
    for step in steps.values():
        if step.done(study):
            continue
        # A progress file left by a killed earlier run would show as running before it starts.
        (step.out_dir(study) / console.PROGRESS).unlink(missing_ok=True)
        deps = [refs[d] for d in step.deps if d in refs]
        refs[step.id] = remote.options(name=step.id, runtime_env=env,
                                       **step_resources(step, gpus, cluster_gpus, cpus)
                                       ).remote(step, study, threads, secrets, verbose,
                                                *deps)
    pending, names = list(refs.values()), {ref: sid for sid, ref in refs.items()}
    say(f"{study.name}: {len(pending)} steps submitted to Ray ({cluster_gpus:g} GPUs in the "
        f"cluster)")
    with ScoreCache(None) as cache, console.RemoteBars() as bars:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1, timeout=console.SHARE_EVERY)
            bars.show(_startable(pending, names, steps, study))
            if not finished:
                continue
            try:
                ray.get(finished[0])
            except ray.exceptions.RayTaskError as exc:
                raise exc.cause from None  # the step's own error (an InputError keeps exit 2)
            step = steps[names[finished[0]]]
            if step.kind == "score":
                cache.merge(step.out_dir(study) / CACHE_FILE)
            seconds = json.loads((step.out_dir(study) / MANIFEST).read_text())["seconds"]
            bars.done(step.id, f"[{len(refs) - len(pending)}/{len(refs)}] {step.id} done in "
                               f"{seconds:.1f} s")


def _startable(pending: list, names: dict, steps: dict[str, Step],
               study: Study) -> dict[str, Path]:
    """The folders of the pending steps whose inputs are done: the only ones that can be
    running, so the driver looks for no progress file of the others."""
    waiting = {names[ref] for ref in pending}
    return {names[ref]: steps[names[ref]].out_dir(study) for ref in pending
            if not waiting.intersection(steps[names[ref]].deps)}


def _ray_task(step: Step, study: Study, threads: int, secrets: dict[str, str], verbose: bool,
              *_deps: str) -> str:
    # Ray resolves the dependency refs before calling, so the inputs exist on shared storage.
    # The keys are in this worker's environment for this step only (Ray reuses workers).
    before = {k: os.environ.get(k) for k in secrets}
    os.environ.update(secrets)
    try:
        # The bar goes to the worker's own stderr, and to the progress file the driver shows.
        return run_step(step, study, threads, progress=True, verbose=verbose, share=True)
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def report_path(study: Study) -> Path:
    """Where the study's report is written."""
    return study.out / "report" / "index.html"
