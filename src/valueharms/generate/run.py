"""Drive a backend over systems x benchmark items x samples into a resumable JSONL file.

Resuming. The file holds one line per (system, benchmark, prompt id, sample); a rerun reads it
and generates only what is missing, so a killed run ends without duplicates or gaps.

Same result as an uninterrupted run. Each row's randomness comes from its own seed,
``row_seed(seed, system, benchmark, prompt_id, sample)``, never from a shared stream, so it
does not depend on batch composition or on what was done before. The batch plan (rows sorted
by prompt length, longest first, then cut into batches of at most ``batch_size`` rows and,
when the backend has a ``token_budget``, at most that many rows x longest prompt tokens) is a
pure function of the inputs; a backend whose
rows can influence each other numerically (``rows_independent = False``: padding, batch
shapes) gets every planned batch that still has a missing row repeated whole, and only the
missing rows are written. Rows are written in plan order, so the resumed file is the
uninterrupted file, line for line.

Failures. A request the backend could not serve (e.g. an API that kept failing) is not written
to the output; it goes to ``<out>.failed.jsonl`` with its error and is retried by the next run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import benchmarks, console, models, profile, provenance, targets
from ..config import BackendOptions, BenchmarkOptions
from ..errors import InputError
from ..files import JsonlAppender
from ..records import BenchmarkItem, Decoding, Generation, System, to_json
from ..systems import SystemKey
from ..values import Profile
from . import Backend, GenRequest, GenResult, row_seed


@dataclass(frozen=True)
class Row:
    """One (system, item, sample) to generate, with the exact prompt and its request."""

    system: System
    item: BenchmarkItem
    sample: int
    request: GenRequest

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.system.key, self.item.benchmark, self.item.id, self.sample)


@dataclass(frozen=True)
class Summary:
    out: Path
    planned: int  # rows this run is responsible for
    already_done: int  # found in the file at the start
    written: int
    failed: int
    failures: Path | None  # the file listing failed rows, when there are any


def failures_path(out_file: str | os.PathLike) -> Path:
    """Where the rows that failed in the last run are listed, beside ``out_file``."""
    out = Path(out_file)
    stem = out.name[:-len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".failed.jsonl")


def plan_rows(systems: list[System], items: list[BenchmarkItem], backend: Backend,
              decoding: Decoding, profiles: dict[str, Profile] | None = None,
              data_dir: str | None = None, stops: str = "benchmark") -> list[list[Row]]:
    """Every row, cut into the batches the backend will see (a pure function of the inputs).

    ``stops``: ``benchmark`` keeps ``decoding``'s stops for every system; ``reference`` gives
    each system kind the paper's code's stops (:func:`valueharms.benchmarks.reference_stops`).
    """
    keys = [s.key for s in systems]
    if len(set(keys)) != len(keys):
        raise InputError(f"--system: {next(k for k in keys if keys.count(k) > 1)!r} given twice")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise InputError(f"benchmark items: duplicate prompt id {next(i for i in ids if ids.count(i) > 1)!r}")
    rows: list[Row] = []
    for system in systems:
        profile = _profile(system, profiles, data_dir)
        served = _served_name(system, backend)
        adapter = None if served else system.adapter
        for item in items:
            prompt = backend.prompt(system, item, profile)
            arm = benchmarks.stops_for(stops, system.kind, item.benchmark, decoding)
            for sample in range(decoding.samples):
                seed = row_seed(decoding.seed, system.key, item.benchmark, item.id, sample)
                rows.append(Row(system, item, sample,
                                GenRequest(prompt, arm, seed, adapter, served)))
    lengths = {p: backend.prompt_length(p) for p in {r.request.prompt for r in rows}}
    order = sorted(range(len(rows)), key=lambda i: (-lengths[rows[i].request.prompt], i))
    size, budget = max(1, backend.batch_size), backend.token_budget
    batches: list[list[Row]] = []
    for i in order:
        # Longest first: a batch's first row is its longest, so rows x that length is its size.
        fits = batches and len(batches[-1]) < size and (
            budget is None or (len(batches[-1]) + 1) * lengths[batches[-1][0].request.prompt] <= budget)
        if fits:
            batches[-1].append(rows[i])
        else:
            batches.append([rows[i]])
    return batches


def _served_name(system: System, backend: Backend) -> str | None:
    """The endpoint's model name for an ``adapter:NAME=...`` system when the backend serves
    adapters by name (openai); None otherwise."""
    if system.kind != "adapter" or not backend.serves_by_name:
        return None
    return SystemKey.parse(system.key).arg


def fetch_adapters(systems: list[System], backend: Backend) -> list[System]:
    """``adapter:`` systems with their Hub ids downloaded (local folders as given), for a
    backend that loads adapter folders."""
    if backend.serves_by_name:
        return systems
    return [replace(s, adapter=models.fetch_adapter(s.adapter)) if s.kind == "adapter" and
            s.adapter else s for s in systems]


def _profile(system: System, profiles: dict[str, Profile] | None,
             data_dir: str | None) -> Profile | None:
    if system.kind != "prompt":
        return None
    if profiles and system.target in profiles:
        return profiles[system.target]
    return targets.find(str(system.target), data_dir)


def record(row: Row, result: GenResult, backend: Backend, origin: dict,
           adapter_sha256: str | None) -> dict:
    """The Generation line of a successful result; ``origin``: what every row of this run
    shares (model, code); ``adapter_sha256``: the content hash of the row's adapter."""
    assert result.text is not None, "only successful results become Generation lines"
    origin = {**origin, "adapter_sha256": adapter_sha256, **(result.provenance or {})}
    return to_json(Generation(system=row.system.key, benchmark=row.item.benchmark,
                              prompt_id=row.item.id, sample=row.sample, prompt=row.request.prompt,
                              text=result.text, model=backend.model,
                              decoding=row.request.decoding.as_dict(), category=row.item.category,
                              meta={**row.item.meta, "item_text": row.item.text},
                              provenance=origin))


def _done_keys(appender: JsonlAppender, planned: dict[tuple, Row], model: str) -> set[tuple]:
    """Keys already in the file; a planned key made with other settings is an error."""
    done = set()
    for n, rec in enumerate(appender.records(), 1):
        try:
            key = (rec["system"], rec["benchmark"], rec["prompt_id"], rec["sample"])
        except KeyError as exc:
            raise InputError(f"{appender.path}: line {n}: not a generation record "
                             f"(no {exc.args[0]!r})") from None
        row = planned.get(key)
        if row is None:
            continue  # another slice of the same study: keep it, it is not ours to redo
        if key in done:
            raise InputError(f"{appender.path}: line {n}: duplicate generation {key}")
        for field, want in (("prompt", row.request.prompt), ("model", model),
                            ("decoding", row.request.decoding.as_dict())):
            if rec.get(field) != want:
                raise InputError(f"{appender.path}: line {n}: column {field!r}: generation "
                                 f"{key} was made with a different {field}; write to a new --out")
        done.add(key)
    return done


def generate(systems: list[System], items: list[BenchmarkItem], backend: Backend,
             out_file: str | os.PathLike, *, decoding: Decoding,
             profiles: dict[str, Profile] | None = None, data_dir: str | None = None,
             progress: bool = True, stops: str = "benchmark",
             origin: dict | None = None) -> Summary:
    """Generate every missing (system, item, sample) of the plan into ``out_file``.

    Each record's ``provenance`` holds the backend's (model commit or hash, dtype, device),
    the code and package versions, ``origin`` (e.g. the study file's hash) and the adapter's
    content hash."""
    systems = fetch_adapters(systems, backend)
    timer = profile.current()
    with timer.span("prompts"):  # building and tokenising every prompt
        batches = plan_rows(systems, items, backend, decoding, profiles, data_dir, stops)
    planned = {row.key: row for batch in batches for row in batch}
    with timer.span("adapters"):
        backend.load_adapters(sorted({r.request.adapter for r in planned.values()
                                      if r.request.adapter}))
    fail_file = failures_path(out_file)
    fresh = not Path(out_file).exists()
    try:
        shared = {**backend.provenance, **provenance.environment(), **(origin or {})}
        # Hashed once per system here, not per written row (a folder walk each time).
        adapter_hashes = {s.key: provenance.adapter_sha256(s.adapter) for s in systems}
        return _run(batches, planned, backend, out_file, fail_file, progress,
                    items[0].benchmark if items else "", shared, adapter_hashes)
    except BaseException:
        # A run that stops before its first line leaves no empty file behind.
        if fresh and Path(out_file).exists() and Path(out_file).stat().st_size == 0:
            Path(out_file).unlink()
        raise


def _run(batches: list[list[Row]], planned: dict[tuple, Row], backend: Backend,
         out_file: str | os.PathLike, fail_file: Path, progress: bool, label: str,
         origin: dict, adapter_hashes: dict[str, str | None]) -> Summary:
    with JsonlAppender(out_file, lock=True) as out:  # a second writer waits
        done = _done_keys(out, planned, backend.model)
        already = len(done)
        fail_file.unlink(missing_ok=True)  # this run retries every earlier failure
        written = failed = 0
        bar = console.bar(len(planned), f"generate {label}", initial=already, unit="gen",
                          disable=not progress)
        with bar:
            for batch in batches:
                todo = [r for r in batch if r.key not in done]
                if not todo:
                    continue
                sent = todo if backend.rows_independent else batch
                results = dict(zip((r.key for r in sent),
                                   backend.generate([r.request for r in sent])))
                lines, failures = [], []
                for row in todo:
                    result = results[row.key]
                    if result.ok:
                        lines.append(record(row, result, backend, origin,
                                            adapter_hashes[row.system.key]))
                    else:
                        failures.append({"system": row.system.key, "benchmark": row.item.benchmark,
                                         "prompt_id": row.item.id, "sample": row.sample,
                                         "error": result.error})
                out.write_many(lines)
                if failures:
                    with JsonlAppender(fail_file) as fails:
                        fails.write_many(failures)
                done.update(r.key for r in todo)
                written, failed = written + len(lines), failed + len(failures)
                bar.update(len(todo))
    return Summary(Path(out_file), len(planned), already, written, failed,
                   fail_file if failed else None)


def benchmark_inputs(benchmark: str, options: BenchmarkOptions, *, seed: int = 42,
                     stop: tuple[str, ...] | None = None, data_dir: str | None = None
                     ) -> tuple[list[BenchmarkItem], Decoding]:
    """The items ``options`` select of ``benchmark`` and its paper decoding changed by
    ``options`` (and ``stop``, when given), seeded with ``seed``."""
    fixed: dict[str, Any] = {"seed": seed} if stop is None else {"seed": seed, "stop": stop}
    decoding = options.decoding().over(benchmarks.get(benchmark).decoding, **fixed)
    items = benchmarks.load_items(benchmark, options.subset, data_dir, options.limit,
                                  list(options.categories) if options.categories else None)
    return items, decoding


def run_benchmark(benchmark: str, systems: list[System], out_file: str | os.PathLike, *,
                  model: str | None, options: BenchmarkOptions, backend: BackendOptions,
                  seed: int = 42, stop: tuple[str, ...] | None = None,
                  model_args: dict[str, Any] | None = None,
                  profiles: dict[str, Profile] | None = None, data_dir: str | None = None,
                  progress: bool = True, stops: str = "benchmark",
                  origin: dict | None = None) -> Summary:
    """The generation stage (``valueharms generate`` and a study's generate step):
    ``systems`` (carrying their adapters) answer ``benchmark``'s items (see
    :func:`benchmark_inputs`) on the backend ``backend`` describes, into ``out_file``.

    Everything is checked before the model loads. ``model_args``: how an hf or vllm backend
    loads the model; ``origin``: provenance every row shares (e.g. the study file's hash)."""
    from . import make_backend

    items, decoding = benchmark_inputs(benchmark, options, seed=seed, stop=stop, data_dir=data_dir)
    if not items:
        raise InputError(f"benchmark {benchmark}: no items selected")
    kwargs = backend.for_backend()
    if backend.backend != "openai":
        kwargs["model_args"] = model_args or {}
    with profile.current().span("load"):
        engine = make_backend(backend.backend, model, **kwargs)
    return generate(systems, items, engine, out_file, decoding=decoding, profiles=profiles,
                    data_dir=data_dir, progress=progress, stops=stops, origin=origin)
