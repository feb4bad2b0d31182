"""The alignment check: a system answers the survey items of the held-out test arguments; its
mean answer per value is its measured profile, compared with the target by NMSE.

NMSE here is the mean over the ten values of ((measured - target) / 5) ** 2: both profiles
on the 1..6 scale are mapped to 0..1 first, so 0 is a perfect match and 1 the largest gap.
Values no parsed answer speaks for are left out of the mean (and reported as missing).

Two ways to get an answer (``method``):
- ``generate``: greedy generation, the number parsed from the text; an unclear reply is
  counted as unparseable, never guessed. What a chat user sees; small models often ramble.
- ``likelihood``: the answer is the most likely first answer token among "1".."6" (one
  forward pass, no text). Always an answer, so a base model that cannot follow the format
  still gets a measured profile to compare with.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .. import sources
from ..chat import encode_prompts, render_prompt, template
from ..config import ALIGNMENT_METHODS
from ..errors import InputError
from ..records import Decoding
from ..values import PVQ_SCALE, VALUES, Profile
from .vim_data import parse_survey_answer, survey_prompt

SPAN = max(PVQ_SCALE) - min(PVQ_SCALE)
# Greedy and short: the answer is one number, possibly with its label.
SURVEY_DECODING = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=16)
METHODS = ALIGNMENT_METHODS  # the old name


@dataclass(frozen=True)
class Answer:
    argument_id: int
    values: tuple[str, ...]  # the values the argument is annotated with
    text: str
    score: int | None  # None: unparseable, not guessed


@dataclass(frozen=True)
class Alignment:
    system: str
    target: Profile
    measured: tuple[float | None, ...]  # mean answer per value; None when nothing parsed
    counts: tuple[int, ...]  # parsed answers per value
    n_items: int
    n_unparsed: int
    answers: tuple[Answer, ...]

    @property
    def nmse(self) -> float | None:
        pairs = [(m, t) for m, t in zip(self.measured, self.target.scores) if m is not None]
        if not pairs:
            return None
        return float(np.mean([((m - t) / SPAN) ** 2 for m, t in pairs]))

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(v for v, m in zip(VALUES, self.measured) if m is None)

    def measured_profile(self) -> Profile | None:
        """The measured profile, when every value has at least one parsed answer."""
        if self.missing:
            return None
        return Profile(self.system, tuple(self.measured), {"measured": True})  # type: ignore[arg-type]

    def row(self) -> dict:
        nmse = self.nmse
        return {"system": self.system, "target": self.target.name, "items": self.n_items,
                "unparsed": self.n_unparsed, "nmse": "" if nmse is None else round(nmse, 6),
                **{v: "" if m is None else round(m, 4) for v, m in zip(VALUES, self.measured)}}


def test_arguments(data_dir: str | None = None, limit: int | None = None) -> list[sources.Argument]:
    """The held-out test arguments (the first ``limit``) that carry at least one value."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")
    args = [a for a in sources.read_arguments(sources.locate("arguments-test", data_dir))
            if any(a.labels)]
    return args[:limit]


def survey_text(argument: sources.Argument, persona: Profile | None = None) -> str:
    """The user message: the survey item, behind the persona for the prompting baseline."""
    from ..prompts import persona_text

    question = survey_prompt(argument)
    if persona is None:
        return question
    return template("prompting/survey.txt").format(persona=persona_text(persona),
                                                   question=question).rstrip("\n")


def measure(system: str, target: Profile, arguments: Sequence[sources.Argument],
            texts: Sequence[str]) -> Alignment:
    """Parse each reply and average the answers per annotated value."""
    answers = tuple(Answer(a.id, a.values, t, parse_survey_answer(t))
                    for a, t in zip(arguments, texts, strict=True))
    sums, counts = np.zeros(len(VALUES)), np.zeros(len(VALUES), dtype=int)
    for arg, answer in zip(arguments, answers):
        if answer.score is not None:
            labels = np.asarray(arg.labels, dtype=bool)
            sums[labels] += answer.score
            counts[labels] += 1
    measured = tuple(float(s / c) if c else None for s, c in zip(sums, counts))
    return Alignment(system, target, measured, tuple(int(c) for c in counts), len(answers),
                     sum(a.score is None for a in answers), answers)


def evaluate(backend, system: str, target: Profile, arguments: Sequence[sources.Argument], *,
             adapter: str | None = None, persona: Profile | None = None,
             form: str = "auto", method: str = "generate") -> Alignment:
    """Ask ``backend`` (the transformers backend) every survey item and measure."""
    from ..generate import GenRequest

    if method not in METHODS:
        raise InputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    prompts = [render_prompt(survey_text(a, persona), backend.tokenizer, form) for a in arguments]
    if method == "likelihood":
        return measure(system, target, arguments, likeliest_answers(backend, prompts, adapter))
    results = backend.generate([GenRequest(p, SURVEY_DECODING, seed=0, adapter=adapter)
                                for p in prompts])
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"survey generation failed: {failed[0]}")
    return measure(system, target, arguments, [r.text for r in results])


def likeliest_answers(backend, prompts: Sequence[str], adapter: str | None) -> list[str]:
    """For each prompt, the scale point 1..6 whose token is likeliest to come next."""
    import torch

    from ..generate.hf import BASE

    tokenizer = backend.tokenizer
    choices = [tokenizer.encode(str(n), add_special_tokens=False) for n in PVQ_SCALE]
    if any(len(c) != 1 for c in choices):
        raise InputError(f"{backend.model}: the tokenizer splits the digits 1-6; use --method "
                         f"generate")
    ids = torch.tensor([c[0] for c in choices])
    model = backend.peft or backend.lm
    name = None if backend.peft is None else backend.adapter_name(adapter) if adapter else BASE
    answers = []
    for start in range(0, len(prompts), backend.batch_size):
        batch = list(prompts[start:start + backend.batch_size])
        enc = encode_prompts(batch, tokenizer, backend.device)
        rows = {"adapter_names": [name] * len(batch)} if name else {}
        with torch.inference_mode():
            logits = model(**enc, **rows).logits[:, -1, :]  # left padding: last = next token
        picks = logits[:, ids.to(logits.device)].argmax(dim=-1).tolist()
        answers += [str(min(PVQ_SCALE) + p) for p in picks]
    return answers


def table_csv(results: Sequence[Alignment]) -> str:
    """One row per system: items, unparsed, NMSE and the measured mean per value."""
    buf = io.StringIO()
    fields = ["system", "target", "items", "unparsed", "nmse", *VALUES]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(r.row())
    return buf.getvalue()


def profiles_csv(results: Sequence[Alignment]) -> str:
    """Measured profiles in the profile-file format (name + 10 values) the report reads."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *VALUES])
    for r in results:
        profile = r.measured_profile()
        if profile is not None:
            writer.writerow([r.system, *(f"{s:.4f}" for s in profile.scores)])
    return buf.getvalue()


def answer_records(results: Sequence[Alignment]) -> list[dict]:
    """Every reply of every system (answers.jsonl): the text and the number parsed from it."""
    return [{"system": r.system, "argument_id": a.argument_id, "values": list(a.values),
             "text": a.text, "score": a.score} for r in results for a in r.answers]


def describe(result: Alignment) -> str:
    nmse = result.nmse
    lines = [f"{result.system}: target {result.target.name}, {result.n_items} survey items, "
             f"{result.n_unparsed} unparseable answers",
             f"{'value':16} {'target':>6} {'measured':>8} {'answers':>7}"]
    for value, t, m, c in zip(VALUES, result.target.scores, result.measured, result.counts):
        lines.append(f"{value:16} {t:6.2f} {'-' if m is None else f'{m:.2f}':>8} {c:7d}")
    lines.append(f"NMSE {'n/a' if nmse is None else f'{nmse:.4f}'}"
                 + (f" (no answers for {', '.join(result.missing)})" if result.missing else "")
                 + "  [((measured - target) / 5)^2, mean over values]")
    return "\n".join(lines)
