"""The records that flow between stages. Each is one JSON line in the files on disk.

targets -> align (Example) -> generate (BenchmarkItem -> Generation) -> score (Score) -> analyze
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Score.status values: only "ok" carries a number; the others are counted, never averaged.
OK, FAILED, UNSCORABLE, UNPARSED = "ok", "failed", "unscorable", "unparsed"
STATUSES = (OK, FAILED, UNSCORABLE, UNPARSED)


@dataclass(frozen=True)
class Example:
    """A training example: the loss falls on ``completion`` only."""

    prompt: str
    completion: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark prompt before any system-specific wrapping."""

    benchmark: str
    id: str
    text: str  # the bare prompt (continuation prefix or question)
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. HolisticBias axis, descriptor, noun phrase


@dataclass(frozen=True)
class Decoding:
    """Sampling settings (paper defaults: temperature 0.1, top-p 0.75, no repetition penalty;
    the paper's earlier transformers path used ``repetition_penalty`` 1.2)."""

    temperature: float = 0.1
    top_p: float = 0.75
    max_new_tokens: int = 64
    samples: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 42
    repetition_penalty: float = 1.0  # 1.0 = none; > 1 discourages tokens already in the text

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class System:
    """A system under test, named by a key such as ``vim:Hed+value:Hedonism``.

    kind: vanilla | vim | prompt | benign; ``target`` for vim/prompt, ``dataset`` for benign;
    ``mitigation``: none | safety | value:<Value> | dual:<Value>; ``adapter``: LoRA directory.
    """

    key: str
    kind: str
    target: str | None = None
    dataset: str | None = None
    mitigation: str = "none"
    adapter: str | None = None


@dataclass(frozen=True)
class Generation:
    """One sampled output. Identity: (system, benchmark, prompt_id, sample)."""

    system: str
    benchmark: str
    prompt_id: str
    sample: int
    prompt: str  # exactly what reached the model
    text: str
    model: str
    decoding: dict[str, Any]
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # model commit or content hash, adapter hash, backend, device, dtype, environment hash
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.system, self.benchmark, self.prompt_id, self.sample)


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one generation. ``value`` is None unless status is "ok"."""

    system: str
    benchmark: str
    prompt_id: str
    sample: int
    scorer: str  # names what produced the number, e.g. "offline-profanity" or "perspective"
    status: str
    value: float | None = None
    label: str | None = None
    raw: str | None = None
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # scorer model, code, versions


def to_json(record: Any) -> dict[str, Any]:
    """A record (dataclass) as a plain dict, ready for ``json.dumps``."""
    return asdict(record)
