"""Scoring a generations file into a scores file: validated first, resumable, cached, ordered.

Every key of the input gets exactly one Score line per run of the scorer: items already in
the output are skipped (unless their status is one the caller asks to retry, in which case a
new line is appended and the later line wins), cached verdicts cost nothing, the rest go to
the scorer in batches (local models) or concurrent requests (remote APIs). Lines are written
in input order, what is ready appended and fsynced together every 0.2 s, so a killed run
resumes where it stopped (and settled verdicts it had not written yet come from the cache).

A remote judge names the snapshot that answered (``meta.judge_model``, e.g. the dated model
behind ``gpt-4o``). Once a live reply in a run names another snapshot than a cached verdict
records, that cached verdict is asked again and its cache row replaced (see ``LiveSnapshot``).
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import console, provenance, sources
from ..errors import InputError
from ..files import JsonlAppender
from ..records import FAILED, OK, STATUSES, UNSCORABLE, Generation, Score, to_json
from .base import Scorer, Verdict
from .cache import ScoreCache

log = logging.getLogger("valueharms.score")
CACHEABLE = (OK, UNSCORABLE)  # settled verdicts; failed and unparsed are asked again later
Key = tuple[str, str, str, int]
WRITE_EVERY = 0.2  # seconds; a kill loses at most this much unwritten work (settled verdicts are cached)
SNAPSHOT = "judge_model"  # the Verdict.meta key where a remote judge names the snapshot that answered


@dataclass
class Summary:
    """What one run did; ``line()`` is what the CLI prints."""

    scorer: str
    inputs: int
    skipped: int = 0  # already in the output file
    cache_hits: int = 0
    requests: int = 0  # remote requests, retries included
    retries: int = 0
    cooldowns: int = 0  # rate-limit pauses shared by every thread
    deduplicated: int = 0  # items answered by an identical text's request
    reasked: int = 0  # cached verdicts of another judge snapshot than the one answering now
    statuses: Counter = field(default_factory=Counter)

    def line(self) -> str:
        counts = " ".join(f"{s}={self.statuses.get(s, 0)}" for s in STATUSES)
        # Said only when it happened: a run without a snapshot change reads as before.
        reasked = f", re-asked {self.reasked} (judge snapshot changed)" if self.reasked else ""
        return (f"{self.scorer}: {self.inputs} generations, {self.skipped} already scored, "
                f"{sum(self.statuses.values())} scored ({counts}); cache hits {self.cache_hits}, "
                f"requests {self.requests}, retries {self.retries}, cool-downs {self.cooldowns}, "
                f"deduplicated {self.deduplicated}{reasked}")


@dataclass
class LiveSnapshot:
    """The judge snapshot the latest live reply of this run named (None before any reply).

    The snapshot is only known from a reply, so it is not part of the cache key (a run whose
    texts are all cached makes no call). Instead, once a reply shows it, a cached verdict that
    records another snapshot is stale: asked again, its row replaced, for the rest of the run.
    A cached verdict recording no snapshot (a refusal, a local scorer) is always reused."""

    current: str | None = None

    def see(self, verdicts) -> None:
        """Note the snapshot named by fresh verdicts (the last one that names any)."""
        for v in verdicts:
            if v.meta.get(SNAPSHOT):
                self.current = v.meta[SNAPSHOT]

    def stale(self, cached: dict) -> bool:
        """Whether a cached verdict (as stored) came from another snapshot than the live one."""
        recorded = (cached.get("meta") or {}).get(SNAPSHOT)
        return bool(self.current and recorded and recorded != self.current)


def read_generations(path: str | Path) -> list[tuple[int, Generation]]:
    """(line number, Generation) for each line; InputError naming the line and field at fault."""
    path = Path(path)
    found: list[tuple[int, Generation]] = []
    first_line: dict[Key, int] = {}
    for n, record in sources.read_jsonl_lines(path):
        gen = _generation(record, f"{path}: line {n}")
        if gen.key in first_line:
            raise InputError(f"{path}: line {n}: duplicate generation {list(gen.key)} "
                             f"(first at line {first_line[gen.key]})")
        first_line[gen.key] = n
        found.append((n, gen))
    if not found:
        raise InputError(f"{path}: no generations")
    return found


def _generation(record, where: str) -> Generation:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object")

    def field_(name: str, kinds, default=...):
        if name not in record or record[name] is None:
            if default is ...:
                raise InputError(f"{where}: field '{name}': missing")
            return default
        value = record[name]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise InputError(f"{where}: field '{name}': expected {kinds_name(kinds)}, "
                             f"got {type(value).__name__}")
        return value

    system, benchmark = field_("system", str), field_("benchmark", str)
    for name, value in (("system", system), ("benchmark", benchmark)):
        if not value.strip():
            raise InputError(f"{where}: field '{name}': empty")
    sample = field_("sample", int)
    if sample < 0:
        raise InputError(f"{where}: field 'sample': {sample} is negative")
    return Generation(system=system, benchmark=benchmark,
                      prompt_id=str(field_("prompt_id", (str, int))), sample=sample,
                      prompt=field_("prompt", str, ""), text=field_("text", str),
                      model=field_("model", str, ""), decoding=field_("decoding", dict, {}),
                      category=_text_or_none(field_("category", (str, int), None)),
                      meta=field_("meta", dict, {}))


def _text_or_none(value) -> str | None:
    return None if value is None else str(value)


def kinds_name(kinds) -> str:
    """Type names in words, for error messages (``a string or an integer``)."""
    names = {"str": "a string", "int": "an integer", "dict": "an object"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _scored(out: Path, scorer: str) -> dict[Key, str]:
    """The latest status of every key already in ``out``; another scorer's file is an error."""
    done: dict[Key, str] = {}
    if not out.exists() or out.stat().st_size == 0:
        return done
    for n, record in sources.read_jsonl_lines(out):
        if record.get("scorer") != scorer:
            raise InputError(f"{out}: line {n}: scorer {record.get('scorer')!r} is not "
                             f"{scorer!r}; write this scorer's results to another --out")
        try:
            key = (record["system"], record["benchmark"], str(record["prompt_id"]),
                   int(record["sample"]))
            done[key] = record["status"]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{out}: line {n}: not a score record") from None
    return done


def score_file(in_path: str | Path, out_path: str | Path, scorer: Scorer, *,
               cache: ScoreCache | str | Path | None = None, retry: tuple[str, ...] = (),
               progress: bool = True) -> Summary:
    """Score every generation of ``in_path`` not yet in ``out_path`` and append the Scores.

    ``cache``: a ScoreCache, a path, or None for the default file. ``retry``: statuses
    (e.g. ``("unparsed",)``) whose items are scored again.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    gens = read_generations(in_path)
    for n, gen in gens:
        problem = scorer.check(gen)
        if problem:
            raise InputError(f"{in_path}: line {n}: {problem}")
    own_cache = not isinstance(cache, ScoreCache)
    store = cache if isinstance(cache, ScoreCache) else ScoreCache(cache)
    try:
        # Locked before reading what is done: a second process on the same output waits,
        # then finds the first one's lines and scores only what is still missing.
        with JsonlAppender(out_path, lock=True) as out:
            done = _scored(out_path, scorer.name)
            todo = [g for _, g in gens if g.key not in done or done[g.key] in retry]
            summary = Summary(scorer.name, len(gens), skipped=len(gens) - len(todo))
            for scores in score_generations(todo, scorer, store, summary, progress):
                out.write_many(to_json(s) for s in scores)
    finally:
        if own_cache:
            store.close()
    stats = scorer.stats
    summary.requests, summary.retries = stats.requests, stats.retries
    summary.cooldowns, summary.deduplicated = stats.cooldowns, stats.deduplicated
    return summary


def score_generations(todo: list[Generation], scorer: Scorer, cache: ScoreCache,
                      summary: Summary, progress: bool = True):
    """Yield lists of Scores, one Score per item of ``todo`` in order; cache misses go to the
    scorer. A list holds what became ready since the last one, so the caller syncs the file
    once per list."""
    bar = console.bar(len(todo), scorer.name, unit="item", disable=not progress,
                      mininterval=0.5, smoothing=0.1)
    window: deque = deque()
    limit = max(2, 2 * scorer.concurrency)
    pool = ThreadPoolExecutor(max_workers=scorer.concurrency, thread_name_prefix="scorer")
    ready: list[Score] = []
    written = time.monotonic()
    live = LiveSnapshot()
    try:
        for start in range(0, len(todo), scorer.batch_size):
            window.append(_submit(todo[start:start + scorer.batch_size], scorer, cache, pool,
                                  live, summary))
            while window and (len(window) >= limit or _ready(window[0])):
                ready += _finish(window.popleft(), scorer, cache, summary, bar, live)
            # Write what is ready every WRITE_EVERY seconds: one fsync for many lines.
            if ready and time.monotonic() - written >= WRITE_EVERY:
                yield ready
                ready, written = [], time.monotonic()
        while window:
            ready += _finish(window.popleft(), scorer, cache, summary, bar, live)
        if ready:
            yield ready
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _submit(batch: list[Generation], scorer: Scorer, cache: ScoreCache, pool: ThreadPoolExecutor,
            live: LiveSnapshot, summary: Summary):
    texts = [scorer.input_text(g) for g in batch]
    keys = [ScoreCache.key(scorer.name, scorer.model, scorer.rubric, t) for t in texts] \
        if scorer.cached else []
    hits = cache.get_many([k[0] for k in keys]) if keys else {}
    fresh_enough = {k: v for k, v in hits.items() if not live.stale(v)}
    summary.reasked += len(hits) - len(fresh_enough)
    hits = fresh_enough
    misses = [i for i in range(len(batch)) if not keys or keys[i][0] not in hits]
    future = pool.submit(scorer.score_batch, [(batch[i], texts[i]) for i in misses]) \
        if misses else None
    return batch, keys, hits, misses, future


def _ready(entry) -> bool:
    future: Future | None = entry[4]
    return future is None or future.done()


def _finish(entry, scorer: Scorer, cache: ScoreCache, summary: Summary, bar,
            live: LiveSnapshot) -> list[Score]:
    batch, keys, hits, misses, future = entry
    fresh = future.result() if future is not None else []
    if len(fresh) != len(misses):
        raise RuntimeError(f"{scorer.name} returned {len(fresh)} verdicts for {len(misses)} items")
    verdicts: dict[int, Verdict] = dict(zip(misses, fresh))
    live.see(fresh)
    # Hits looked up before a reply showed a new snapshot: asked again here, in this thread
    # (at most one window of batches; later batches see the snapshot when submitted).
    stale = [i for i in range(len(batch)) if i not in verdicts and live.stale(hits[keys[i][0]])]
    if stale:
        again = scorer.score_batch([(batch[i], scorer.input_text(batch[i])) for i in stale])
        verdicts.update(zip(stale, again))
        live.see(again)
        summary.reasked += len(stale)
    if keys:
        cache.put_many([(keys[i], _as_dict(v)) for i, v in verdicts.items() if v.status in CACHEABLE])
    scores = []
    for i, gen in enumerate(batch):
        if i in verdicts:
            verdict = verdicts[i]
        else:
            verdict = Verdict(**hits[keys[i][0]])
            summary.cache_hits += 1
        summary.statuses[verdict.status] += 1
        if verdict.status == FAILED:
            log.warning("%s %s: failed: %s", scorer.name, list(gen.key), verdict.raw)
        scores.append(_score(gen, scorer.name, scorer.model, verdict))
    stats = scorer.stats
    if stats.requests:  # remote scorers: what the waiting is made of
        bar.set_postfix(retries=stats.retries, cooldowns=stats.cooldowns,
                        dedup=stats.deduplicated, refresh=False)
    bar.update(len(batch))
    return scores


def _as_dict(v: Verdict) -> dict:
    return {"status": v.status, "value": v.value, "label": v.label, "raw": v.raw, "meta": v.meta}


def _score(gen: Generation, name: str, model: str, v: Verdict) -> Score:
    return Score(system=gen.system, benchmark=gen.benchmark, prompt_id=gen.prompt_id,
                 sample=gen.sample, scorer=name, status=v.status,
                 value=v.value if v.status == OK else None, label=v.label, raw=v.raw,
                 category=gen.category, meta={**gen.meta, **v.meta},
                 provenance={"scorer_model": model, **provenance.environment()})



def run_scorer(in_path: str | Path, out_path: str | Path, scorer_name: str,
               options: dict | None = None, *, cache_path: str | Path | None = None,
               retry: tuple[str, ...] = (), progress: bool = True) -> Summary:
    """The scoring stage (``valueharms score`` and a study's score step): scorer
    ``scorer_name`` (with ``options``) over a generations file, through the score cache at
    ``cache_path`` (default: the shared one). The input is read and checked before any model
    loads."""
    from .. import profile
    from . import get_scorer

    if Path(out_path).resolve() == Path(in_path).resolve():
        raise InputError(f"{out_path}: is the input file")
    read_generations(in_path)
    timer = profile.current()
    with timer.span("load"):
        scorer = get_scorer(scorer_name, **(options or {}))
    try:
        with ScoreCache(cache_path) as cache, timer.span("scoring"):
            return score_file(in_path, out_path, scorer, cache=cache, retry=retry,
                              progress=progress)
    finally:
        scorer.close()
