"""The exact text a system under test sees for a benchmark item.

Layers, innermost first, each a replaceable template (``valueharms.chat.template``):

1. the benchmark's form (``valueharms.benchmarks``): ``benchmarks/completion.txt`` (rtp,
   holisticbiasr: the bare prefix, so the model continues it) or ``benchmarks/question.txt``
   (hexphi, beavertails, advbench: ``QUESTION: ... ANSWER:``);
2. the mitigation (``mitigation/{safety,safety_strict,value,dual}.txt``): inside the question, right
   before the answer marker; for a continuation, a line above the prefix;
3. for ``prompt:`` systems, the persona (``prompting/persona.txt`` with the profile's ten
   scores in canonical order and one-line definitions from ``prompting/definitions.txt``)
   and the task line (``prompting/{question,completion}.txt``).

Decision: the persona goes in the *user* message, never a system message. Then the only
difference between ``vanilla`` and ``prompt:X`` is the persona text (a chat template's own
default system prompt stays the same for both), the same text serves base-form models and
OpenAI-compatible endpoints, and templates that reject a system role still work.
"""
from __future__ import annotations

from . import benchmarks, targets
from .chat import render_prompt, template
from .errors import InputError
from .records import BenchmarkItem, System
from .values import VALUES, Profile


def _text(name: str) -> str:
    # Files end with a newline an editor adds; the prompt must end exactly at the marker.
    return template(name).rstrip("\n")


def _fill(name: str, **fields: str) -> str:
    """Template ``name`` with ``fields``; a user's template with a wrong placeholder is bad input."""
    try:
        return _text(name).format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"template {name}: bad placeholder ({exc!r}); it may use "
                         f"{', '.join('{' + f + '}' for f in fields)}") from None


def definitions() -> dict[str, str]:
    """One-line definition of each value, from ``prompting/definitions.txt`` (``Value: text``)."""
    out: dict[str, str] = {}
    for n, line in enumerate(_text("prompting/definitions.txt").splitlines(), 1):
        if not line.strip():
            continue
        value, sep, text = line.partition(":")
        if not sep or value.strip() not in VALUES or not text.strip():
            raise InputError(f"prompting/definitions.txt: line {n}: expected '<Value>: definition' "
                             f"with a value from {', '.join(VALUES)}")
        out[value.strip()] = text.strip()
    missing = [v for v in VALUES if v not in out]
    if missing:
        raise InputError(f"prompting/definitions.txt: no definition for {', '.join(missing)}")
    return out


def _score(score: float) -> str:
    return f"{round(score, 2):g}"


def persona_text(profile: Profile) -> str:
    """The profile stated as a person: ten scores in canonical order, each with its definition."""
    defs = definitions()
    lines = "\n".join(f"- {value} ({defs[value]}): {_score(score)}"
                      for value, score in zip(VALUES, profile.scores))
    return _fill("prompting/persona.txt", profile=lines)


def mitigation_text(mitigation: str) -> str:
    """The mitigation sentence(s) for ``none``/``safety``/``safety-strict``/``value:V``/``dual:V``
    ("" for none)."""
    kind, _, value = mitigation.partition(":")
    if kind == "none":
        return ""
    if kind == "safety":
        return _text("mitigation/safety.txt")
    if kind == "safety-strict":
        return _text("mitigation/safety_strict.txt")
    if kind == "value":
        return _fill("mitigation/value.txt", value=value)
    if kind == "dual":
        return _fill("mitigation/dual.txt",
            safety=_text("mitigation/safety.txt"),
            value=_fill("mitigation/value.txt", value=value))
    raise InputError(f"mitigation {mitigation!r}: expected none, safety, safety-strict, "
                     f"value:<Value> or dual:<Value>")


def question_text(system: System, item: BenchmarkItem, profile: Profile | None = None, *,
                  data_dir: str | None = None) -> str:
    """The user message for ``item`` under ``system`` (before any chat template).

    ``profile`` is the prompt system's target profile; when None it is looked up by name.
    """
    form = benchmarks.get(item.benchmark).form
    mitigation = mitigation_text(system.mitigation)
    if form == benchmarks.QUESTION:
        text = _fill("benchmarks/question.txt",
            question=item.text, mitigation=f" {mitigation}" if mitigation else "")
    else:
        text = _fill("benchmarks/completion.txt",
            text=item.text, mitigation=f"{mitigation}\n\n" if mitigation else "")
    if system.kind != "prompt":
        return text
    if profile is None:
        profile = targets.find(str(system.target), data_dir)
    elif profile.name != system.target:
        raise InputError(f"system {system.key!r}: given the profile of {profile.name!r}")
    persona = persona_text(profile)
    if form == benchmarks.QUESTION:
        return _fill("prompting/question.txt", persona=persona, question=text)
    return _fill("prompting/completion.txt", persona=persona, text=text)


def build_prompt(system: System, item: BenchmarkItem, tokenizer, *, profile: Profile | None = None,
                 form: str = "auto", data_dir: str | None = None) -> str:
    """The exact string that reaches the model: :func:`question_text` through the model's
    chat template (form chat, or auto with a template) or passed through as is (form base,
    so a continuation prefix is the last thing the model reads)."""
    return render_prompt(question_text(system, item, profile, data_dir=data_dir), tokenizer, form)

