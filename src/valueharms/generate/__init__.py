"""Generation: one interface, three backends.

A backend turns :class:`GenRequest` s (a prompt, an optional LoRA adapter, the decoding and
the row's own seed) into :class:`GenResult` s, one per request, in order:

- ``hf``: transformers + PEFT on CPU or CUDA. One base model serves every adapter; a batch
  may mix adapters (PEFT's per-row ``adapter_names``).
- ``vllm``: vLLM with multi-LoRA requests (GPU; imported only when used).
- ``openai``: any OpenAI-compatible endpoint, chat or completions, concurrent, rate-limited,
  retried; a request that keeps failing comes back as a failed result, never as text.

:func:`valueharms.generate.run.generate` drives a backend over (systems x benchmark items x
samples) into a resumable JSONL file.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..config import BACKENDS
from ..errors import InputError
from ..records import BenchmarkItem, Decoding, System
from ..values import Profile


@dataclass(frozen=True)
class GenRequest:
    """One row to generate: ``seed`` alone decides its random draws."""

    prompt: str
    decoding: Decoding
    seed: int
    adapter: str | None = None  # LoRA directory; None = the base model
    served_model: str | None = None  # openai: the endpoint's name for this system's model


@dataclass(frozen=True)
class GenResult:
    text: str | None  # None when the request failed
    error: str | None = None
    provenance: dict | None = None  # what the server said made it (model, system_fingerprint)

    @property
    def ok(self) -> bool:
        return self.text is not None


class Backend(Protocol):
    model: str  # names the model in every Generation record
    batch_size: int  # rows per call that the runner plans
    token_budget: int | None  # and at most this many rows x longest prompt tokens (None: no cap)
    # True when a row's text does not depend on the other rows of its call. When False the
    # runner always repeats a planned batch whole, so a resumed run sees the same numerics.
    rows_independent: bool
    provenance: dict  # backend, model identity (commit or content hash), dtype, device
    # True when an endpoint serves each adapter: system under its own model name (the system's
    # name) instead of loading adapter folders.
    serves_by_name: bool

    def prompt(self, system: System, item: BenchmarkItem, profile: Profile | None) -> str:
        """The exact text this backend sends for ``item`` under ``system``."""

    def prompt_length(self, prompt: str) -> int:
        """A length to sort prompts by, so a batch holds prompts of similar length."""

    def load_adapters(self, paths: list[str]) -> None:
        """Load (or check) these LoRA directories before any generation starts."""

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """One result per request, in order."""


@runtime_checkable
class ChoiceScorer(Protocol):
    """A backend that reads an answer from token probabilities instead of generated text (the
    alignment check's ``likelihood`` and ``expected`` readings). HFBackend is one."""

    def choice_logprobs(self, prompts: list[str], choices: list[str],
                        adapter: str | None = None) -> list[list[float]]:
        """Per prompt, the log-probability of each choice as the next token."""


def row_seed(seed: int, system: str, benchmark: str, prompt_id: str, sample: int) -> int:
    """The seed of one (system, item, sample): independent of batches, order and resumes."""
    key = f"{seed}\x1f{system}\x1f{benchmark}\x1f{prompt_id}\x1f{sample}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1  # fits in int64


def truncate_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """``text`` up to (not including) the earliest stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def make_backend(name: str, model: str | None, **options) -> Backend:
    """A backend by name; options are those of the backend's constructor."""
    if name == "hf":
        from .hf import HFBackend

        return HFBackend(model, **options)
    if name == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend(model, **options)
    if name == "openai":
        from .openai_compat import OpenAIBackend

        return OpenAIBackend(model, **options)
    raise InputError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")
