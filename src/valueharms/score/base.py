"""What every scorer is: a name that goes into each Score, and a batch call that returns verdicts.

The runner (``score.run``) owns the loop, the cache and the output file; a scorer only turns
generations into :class:`Verdict` objects. Remote scorers make one request per item under the
shared retry/rate-limit client; local scorers take batches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..benchmarks import MASK, family
from ..errors import InputError
from ..records import FAILED, OK, UNPARSED, UNSCORABLE, Generation
from ..remote import Failed, InFlight, Policy, RateLimiter, Stats, Unscorable, call, redact

# Generation.meta keys that may carry the bare benchmark text (without chat wrapping).
BARE_PROMPT_KEYS = ("item_text", "question")
# What a toxicity or regard scorer reads of a generation (see ``scored_text``).
SPANS = ("continuation", "first-sentence", "prompt+first-sentence", "prompt+continuation")


@dataclass(frozen=True)
class Verdict:
    """One scorer output before it becomes a Score; ``value`` only when status is ok."""

    status: str
    value: float | None = None
    label: str | None = None
    raw: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status != OK and self.value is not None:
            raise ValueError("only an ok verdict carries a value")


class Scorer:
    """Base class. ``name`` says exactly what produced a number (e.g. ``regard:sasha/regardv3``);
    ``model`` and ``rubric`` join the input text in the cache key."""

    name: str = ""
    model: str = ""
    rubric: str = ""
    batch_size: int = 1  # items per score_batch call
    concurrency: int = 1  # score_batch calls in flight
    cached: bool = True  # False for pure functions cheaper than a cache lookup

    def __init__(self) -> None:
        self.stats = Stats()

    def check(self, gen: Generation) -> str | None:
        """What is wrong with ``gen`` for this scorer (message naming the field), or None."""
        return None

    def input_text(self, gen: Generation) -> str:
        """Exactly what the model or service is asked about; its hash keys the cache."""
        return gen.text

    def score_batch(self, items: list[tuple[Generation, str]]) -> list[Verdict]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RemoteScorer(Scorer):
    """One request per item, paced and retried by the shared client; faults become verdicts."""

    batch_size = 1

    def __init__(self, policy: Policy, secret: str | None = None):
        super().__init__()
        if policy.attempts < 1 or policy.concurrency < 1 or min(policy.qps, policy.backoff) < 0 \
                or policy.timeout <= 0:
            raise InputError(f"scorer options: attempts and concurrency must be >= 1, qps and "
                             f"backoff >= 0, timeout > 0 (got {policy})")
        self.policy = policy
        self.concurrency = policy.concurrency
        self.limiter = RateLimiter(policy.qps)
        self._secret = secret
        # Settled verdicts are reused for repeated texts (RTP samples at temperature 0.1 often
        # repeat); failed ones are asked again.
        self._inflight = InFlight(keep=lambda v: getattr(v, "status", None) in (OK, UNSCORABLE))

    def request(self, text: str) -> Verdict:
        raise NotImplementedError

    def score_batch(self, items: list[tuple[Generation, str]]) -> list[Verdict]:
        return [self._one(text) for _, text in items]

    def _one(self, text: str) -> Verdict:
        if self.policy.dedup:
            return self._inflight.get(text, lambda: self._ask(text), self.stats)
        return self._ask(text)

    def _ask(self, text: str) -> Verdict:
        try:
            return call(lambda: self.request(text), self.policy, self.limiter, self.stats,
                        secrets=(self._secret,))
        except Unscorable as exc:
            return Verdict(UNSCORABLE, raw=redact(str(exc), self._secret))
        except Failed as exc:
            return Verdict(FAILED, raw=str(exc), meta={"attempts": exc.attempts})


def bare_prompt(gen: Generation) -> str:
    """The benchmark text without chat wrapping when the generator kept it, else the prompt."""
    for key in BARE_PROMPT_KEYS:
        text = gen.meta.get(key)
        if isinstance(text, str):
            return text
    return gen.prompt


def bare_text(gen: Generation) -> str:
    """The benchmark text without chat wrapping, or "" when the generator did not keep it."""
    return next((gen.meta[k] for k in BARE_PROMPT_KEYS if isinstance(gen.meta.get(k), str)), "")


def first_sentence(text: str) -> str:
    """``text`` up to its first ".", with a "." added when it has none, as ROBBIE's regard
    preprocessing and the paper's RTP evaluation cut it ("" stays "")."""
    text = text.strip()
    return text.split(".", 1)[0] + "." if text else ""


def scored_text(gen: Generation, span: str) -> str:
    """The part of ``gen`` a scorer reads: the continuation or its first sentence, optionally
    after the bare benchmark prompt (joined by a space when neither side has one)."""
    body = first_sentence(gen.text) if span.endswith("first-sentence") else gen.text
    if not span.startswith("prompt+"):
        return body
    head = bare_text(gen)
    joint = " " if head and body and not (head[-1].isspace() or body[0].isspace()) else ""
    return f"{head}{joint}{body}"


class SpanOption:
    """A scorer option ``span`` (one of SPANS) choosing what of a generation is scored; a
    span other than the scorer's default is written into its name, beside every number."""

    default_span = "continuation"
    span = "continuation"

    def _setup_span(self, span: str | None) -> None:
        span = span or self.default_span
        if span not in SPANS:
            raise InputError(f"span {span!r}: expected one of {', '.join(SPANS)}")
        self.span = span

    def span_label(self) -> str:
        return "" if self.span == self.default_span else f"(span={self.span})"

    def input_text(self, gen: Generation) -> str:
        return scored_text(gen, self.span)


def mask_noun_phrase(text: str, noun_phrase: str | None) -> str:
    """Replace the HolisticBias noun phrase with XYZ, as the regard classifier was trained."""
    if not noun_phrase:
        return text
    return re.sub(re.escape(noun_phrase), MASK, text, flags=re.IGNORECASE)


__all__ = ["Verdict", "Scorer", "RemoteScorer", "SpanOption", "bare_prompt", "bare_text",
           "first_sentence", "scored_text", "mask_noun_phrase", "family",
           "OK", "FAILED", "UNSCORABLE", "UNPARSED"]
