"""Study-level chaos: kill ``valueharms run`` with SIGKILL at seeded random moments, restart it
each time, and check that the finished study equals an uninterrupted run's, file by file.

The study is a small one on a random 2-layer Llama (the tests' tiny model): VIM and a benign
fine-tune, RealToxicityPrompts and HEx-PHI slices, offline scorers, the alignment check,
metrics and the report, so every kind of step runs. Kills are planned per kind of step (by
default two each for train, generate, score, alignment, metrics and report): when a step of
the planned kind starts, the whole process group is killed after a seeded delay, wherever the
run is by then (the step that was running is recorded). With ``--executor ray`` the driver is
left alone and Ray worker processes are killed in the middle of their step tasks instead
(Ray retries the task; the step resumes from what the killed worker had written).

Compared: every file the steps and the report wrote, byte for byte, except the manifests,
training logs and console logs (log.txt), which hold times and each restart's output, and a
Ray score step's own cache. A Ray run is compared with a local one: every step runs with the
driver's CPU thread count on both executors (see ``[study] threads``). The last line is JSON:
seeds, kills and where they landed, records compared, seconds.

    python bench/chaos_study.py [--seeds 1 2 3] [--kills-per-kind 2] [--executor ray]
                                [--model DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from valueharms import provenance

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("train", "generate", "score", "alignment", "metrics", "report")
# A kill lands at a seeded fraction of the step's length in the uninterrupted run (its
# manifest's "seconds"), so it falls inside the step however fast the machine is.
FRACTION = (0.05, 0.85)
# Plan order: all training, then generation and scoring alternating, then the rest.
PHASE = {"train": 0, "generate": 1, "score": 1, "alignment": 2, "metrics": 3, "report": 4}
# They hold times and durations; a step's log.txt also gains each killed attempt's output.
# cache.sqlite: a Ray score step's own cache (the driver merges it into its cache; a local run
# has none); its verdicts are the scores.jsonl beside it, which is compared.
VOLATILE = {"manifest.json", "train_log.jsonl", "log.txt", "cache.sqlite"}
STUDY = """\
[study]
name = "chaos"
out = "out"
model = "{model}"
seed = 7

[targets]
names = ["Hed"]

[systems]
methods = ["vanilla", "prompt", "vim", "benign:grammar"]
mitigations = ["none", "value:Hedonism"]

[train]
limit = 12
epochs = 2
batch_size = 4
max_length = 96

[benign]
limit = 8
epochs = 2
batch_size = 2
max_length = 96

[benchmarks.rtp]
limit = 3
samples = 2
max_new_tokens = 8

[benchmarks.hexphi]
limit = 3
max_new_tokens = 8

[scorers]
rtp = "offline-toxicity"
hexphi = "judge-offline"

[generation]
batch_size = 4
"""
_STARTED = re.compile(r"\[\d+/\d+\] (\S+) \.\.\.$")
_FINISHED = re.compile(r"\[\d+/\d+\] (\S+) done")


@dataclass
class Kill:
    """One SIGKILL: planned for a kind of step, landed in ``step`` (None: between steps)."""

    planned: str
    delay: float  # local: the fraction of the step's reference length; ray: 0
    step: str | None = None
    at: float = 0.0  # seconds since the chaos run began


@dataclass
class Outcome:
    seed: int
    executor: str
    kills: list[Kill]
    starts: int  # times `valueharms run` was started
    records: int  # JSONL lines and CSV rows compared
    files: int
    differences: list[str]
    seconds_reference: float
    seconds_chaos: float

    @property
    def landed(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for kill in self.kills:
            where = kill.step.split("/")[0] if kill.step else "between steps"
            kinds[where] = kinds.get(where, 0) + 1
        return kinds


class Run:
    """One ``valueharms run`` in its own process group; its stderr read on a thread."""

    def __init__(self, study: Path, *extra: str):
        exe = Path(sys.executable).with_name("valueharms")
        self.proc = subprocess.Popen([str(exe), "run", str(study), *extra], cwd=study.parent,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.running: str | None = None
        self.started: queue.Queue[str] = queue.Queue()
        self.tail: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stderr:
            line = raw.rstrip("\n").split("\r")[-1]
            self.tail = (self.tail + [line])[-40:]
            if m := _STARTED.search(line):
                self.running = m.group(1)
                self.started.put(m.group(1))
            elif _FINISHED.search(line):
                self.running = None

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # this run's own group: the run and its children
        self.proc.wait()

    def finish(self) -> None:
        if self.proc.wait() != 0:
            raise RuntimeError(f"valueharms run exited {self.proc.returncode}:\n" +
                               "\n".join(self.tail))


def write_study(folder: Path, model: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(STUDY.format(model=model))
    return path


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output file of the study (by path under ``out``, the folder's own path written
as OUT) except those that hold times."""
    found = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if path.is_file() and path.name not in VOLATILE and not any(
                part.startswith(".") or part == "_work" for part in rel.parts):
            # A file may name where it lives (the report step records the report's path).
            data = path.read_bytes().replace(str(out.resolve()).encode(), b"OUT")
            if path.name == "adapter_config.json":  # PEFT writes a set: order varies per process
                data = provenance.canonical_adapter_config(data)
            found[str(rel)] = data
    return found


def compare(reference: dict[str, bytes], chaos: dict[str, bytes]) -> tuple[list[str], int]:
    """(files that differ or exist on one side only, JSONL lines and CSV rows compared)."""
    differences = sorted(k for k in reference.keys() | chaos.keys()
                         if reference.get(k) != chaos.get(k))
    records = sum(v.count(b"\n") for k, v in reference.items() if k.endswith((".jsonl", ".csv")))
    return differences, records


def kill_locally(study: Path, seed: int, per_kind: int, started: float,
                 lengths: dict[str, float]) -> tuple[list[Kill], int]:
    """Run the study to the end, killing it as the seeded plan says; (kills, starts).
    ``lengths``: seconds each step took in the uninterrupted run."""
    rng = random.Random(seed)
    plan = [Kill(kind, round(rng.uniform(*FRACTION), 2)) for kind in KINDS
            for _ in range(per_kind)]
    kills, starts = [], 0
    while True:
        run, starts = Run(study), starts + 1
        while plan and run.proc.poll() is None:
            try:
                step = run.started.get(timeout=0.2)
            except queue.Empty:
                continue
            kind = step.split("/")[0]
            # A kind the run has moved past (all its steps done) gets no more kills.
            while plan and PHASE[plan[0].planned] < PHASE[kind]:
                plan.pop(0)
            if plan and plan[0].planned == kind:
                time.sleep(plan[0].delay * lengths.get(step, 1.0))
                if run.proc.poll() is not None:
                    break
                kill = plan.pop(0)
                kill.step, kill.at = run.running, round(time.monotonic() - started, 1)
                run.kill()
                kills.append(kill)
                break
        else:
            run.finish()
            return kills, starts
        if run.proc.returncode == 0:
            return kills, starts
        if run.proc.returncode != -signal.SIGKILL:
            run.finish()  # raises with the run's last lines


def kill_ray_workers(study: Path, seed: int, count: int, started: float) -> tuple[list[Kill], int]:
    """Run the study on a local Ray instance and SIGKILL ``count`` busy step workers."""
    rng = random.Random(seed)
    run = Run(study, "--executor", "ray")
    kills = []
    while len(kills) < count and run.proc.poll() is None:
        time.sleep(rng.uniform(0.5, 4.0))
        busy = busy_ray_workers(run.proc.pid)
        if busy:
            pid = rng.choice(sorted(busy))
            os.kill(pid, signal.SIGKILL)
            kills.append(Kill("ray worker", 0.0, busy[pid], round(time.monotonic() - started, 1)))
    run.finish()
    return kills, 1


def busy_ray_workers(root: int) -> dict[int, str]:
    """{pid: step id} of this run's Ray workers running a step: a worker's process title is
    ``ray::`` and the running task's name, which the executor sets to the step id."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            titles[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == root:
                return True
        return False

    steps = {pid: title[len("ray::"):] for pid, title in titles.items()
             if title.startswith("ray::") and title[len("ray::"):].split("/")[0] in KINDS}
    return {pid: step for pid, step in steps.items() if ours(pid)}


def chaos(seed: int, model: Path, work: Path, per_kind: int = 2, executor: str = "local",
          reference: Path | None = None) -> Outcome:
    """An uninterrupted run (or ``reference``, one already made) and a killed one, compared."""
    if reference is None:
        start = time.monotonic()
        reference = write_study(work / "reference", model)
        Run(reference).finish()
        seconds_reference = time.monotonic() - start
    else:
        seconds_reference = 0.0
    lengths = {m["step"]: m["seconds"] for m in (
        json.loads(p.read_text()) for p in reference.parent.glob("out/steps/*/*/manifest.json"))}
    study = write_study(work / f"{executor}-{seed}", model)
    start = time.monotonic()
    if executor == "ray":
        kills, starts = kill_ray_workers(study, seed, per_kind, start)
    else:
        kills, starts = kill_locally(study, seed, per_kind, start, lengths)
    seconds = time.monotonic() - start
    ref, got = snapshot(reference.parent / "out"), snapshot(study.parent / "out")
    differences, records = compare(ref, got)
    return Outcome(seed, executor, kills, starts, records, len(ref), differences,
                   round(seconds_reference, 1), round(seconds, 1))


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_model  # the tests' tiny model

    folder.mkdir(parents=True, exist_ok=True)
    return build_tiny_model(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--kills-per-kind", type=int, default=2,
                        help="local: kills planned per kind of step; ray: workers killed")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--model", type=Path, default=None, help="default: a tiny random Llama")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: temporary)")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="valueharms-chaos-"))
    model = args.model or tiny_model(work / "tiny-llama")
    reference = None
    outcomes = []
    for seed in args.seeds:
        outcome = chaos(seed, model, work, args.kills_per_kind, args.executor, reference)
        reference = work / "reference" / "study.toml"
        outcomes.append(outcome)
        print(f"seed {seed} ({args.executor}): {len(outcome.kills)} kills {outcome.landed}, "
              f"{outcome.starts} starts, {outcome.records} records in {outcome.files} files, "
              f"{len(outcome.differences)} differ {outcome.differences[:5]}; "
              f"{outcome.seconds_chaos:.0f} s (uninterrupted {outcome.seconds_reference:.0f} s)",
              flush=True)
    print(json.dumps([{**asdict(o), "landed": o.landed} for o in outcomes]))
    sys.exit(1 if any(o.differences for o in outcomes) else 0)


if __name__ == "__main__":
    main()
