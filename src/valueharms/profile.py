"""Where a step's time goes: named, exclusive time spans, written to ``profile.json``.

Off unless ``$VALUEHARMS_PROFILE`` is 1 (``valueharms run --profile`` sets it); then every
study step writes ``steps/<id>/profile.json``: the step's wall time and its parts (load,
adapters, prefill, decode, training, scoring, I/O ...). A span inside another is counted
once, in the inner one, so the parts add up to at most the total; ``other`` is the rest
(Python glue, tokenising, progress bars). Disabled spans cost one attribute check.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "VALUEHARMS_PROFILE"


class Profiler:
    """Exclusive seconds per span name, for one step at a time."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self._children: list[float] = []  # per open span: time spent in its inner spans

    @property
    def enabled(self) -> bool:
        return os.environ.get(ENV) == "1"

    def reset(self) -> None:
        self.parts, self._children = {}, []

    def add(self, name: str, seconds: float) -> None:
        """Time measured elsewhere (e.g. inside ``generate``), charged to the open span's child."""
        if self.enabled:
            self.parts[name] = self.parts.get(name, 0.0) + seconds
            if self._children:
                self._children[-1] += seconds

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        start = time.perf_counter()
        self._children.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            inner = self._children.pop()
            self.parts[name] = self.parts.get(name, 0.0) + elapsed - inner
            if self._children:
                self._children[-1] += elapsed

    def summary(self, total: float) -> dict:
        parts = {k: round(v, 3) for k, v in sorted(self.parts.items(), key=lambda kv: -kv[1])}
        return {"seconds": round(total, 3), "parts": parts,
                "other": round(total - sum(self.parts.values()), 3)}


_PROFILER = Profiler()


def current() -> Profiler:
    """The process's profiler (one step runs at a time in a process)."""
    return _PROFILER


class FirstStep:
    """A logits processor that notes when ``generate`` first asks for logits: the prompt's
    forward pass ends there and decoding begins. It leaves the scores as they are."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None

    def __call__(self, input_ids, scores):
        if self.first is None:
            self.first = time.perf_counter()
        return scores

    def record(self, profiler: Profiler, before: str, after: str) -> None:
        """Charge start..first logits to ``before`` and the rest to ``after``."""
        end = time.perf_counter()
        first = self.first or end
        profiler.add(before, first - self.start)
        profiler.add(after, end - first)
