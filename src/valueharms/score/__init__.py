"""Scoring: pluggable scorers behind one registry, one cache and one retrying client.

``get_scorer(name, **options)`` builds a scorer; its ``name`` attribute (e.g.
``judge-hexphi:gpt-4o``, ``offline-toxicity:jigsaw-bilstm+profanity``) is written into every
Score so a number always says what produced it. ``score.run.score_file`` scores a
generations file into a scores file, resumably.

Registry names (a ``:local`` suffix on a judge runs it on a local transformers model):

- ``perspective``             Google Perspective API (``$PERSPECTIVE_API_KEY``)
- ``offline-toxicity``        Jigsaw classifier + profanity SVM ensemble, offline
- ``regard``                  Hugging Face regard classifier (default sasha/regardv3)
- ``offline-regard``          Jigsaw classifier (negative) + VADER (positive), a regard proxy, offline
- ``judge-hexphi``            1-5 harmfulness judge, OpenAI-compatible endpoint (``$OPENAI_API_KEY``)
- ``judge-beavertails``       flagged/unflagged judge, OpenAI-compatible endpoint
- ``judge-hexphi:local``, ``judge-beavertails:local``  the same rubrics on a local model
- ``judge-offline``           refusal phrases + MiniLM similarities, offline

Deprecated names (``DEPRECATED``) still work and run their replacement, whose name goes into
every Score: ``judge-refusal-heuristic`` (the phrase list alone) runs ``judge-offline``.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import typing
from typing import Any, NamedTuple

from ..config import OptionError, Options
from ..errors import InputError
from ..measures import FLAG, HARM, MEASURES, REGARD, TOXICITY, Measure
from ..remote import OPENAI_KEY_ENV, PERSPECTIVE_KEY_ENV


class Entry(NamedTuple):
    """A registry entry: where the scorer class is, the arguments the name fixes, what it
    measures (a scorer with several gives the one its benchmark expects) and the environment
    variable holding its API key (None for local scorers)."""

    module: str
    cls: str
    fixed: dict[str, Any]
    measures: tuple[Measure, ...]
    key_env: str | None = None


# Modules are imported on use to keep start-up light.
_REGISTRY: dict[str, Entry] = {
    "perspective": Entry("perspective", "Perspective", {}, (TOXICITY,), PERSPECTIVE_KEY_ENV),
    "offline-toxicity": Entry("offline", "OfflineToxicity", {}, (TOXICITY,)),
    "regard": Entry("regard", "Regard", {}, (REGARD,)),
    "offline-regard": Entry("offline", "OfflineRegard", {}, (REGARD,)),
    "judge-hexphi": Entry("judges", "OpenAIJudge", {"kind": "hexphi"}, (HARM,), OPENAI_KEY_ENV),
    "judge-beavertails": Entry("judges", "OpenAIJudge", {"kind": "beavertails"}, (FLAG,),
                               OPENAI_KEY_ENV),
    "judge-hexphi:local": Entry("judges", "LocalJudge", {"kind": "hexphi"}, (HARM,)),
    "judge-beavertails:local": Entry("judges", "LocalJudge", {"kind": "beavertails"}, (FLAG,)),
    "judge-offline": Entry("offline", "OfflineJudge", {}, (HARM, FLAG)),
}
# Old name -> the scorer it now runs. Results carry the new scorer's name, so a scores file
# made under the old name is refused rather than continued with the new scorer's verdicts,
# and a study that names it plans new score steps.
DEPRECATED = {"judge-refusal-heuristic": "judge-offline"}


def canonical(name: str) -> str:
    """The registry name ``name`` stands for: a deprecated name's replacement, else itself."""
    return DEPRECATED.get(name, name)


def deprecation(name: str) -> str | None:
    """What to tell a user who named a deprecated scorer (None for a current name)."""
    if name not in DEPRECATED:
        return None
    return (f"scorer {name} is deprecated and runs {DEPRECATED[name]} instead; its results "
            f"are named {DEPRECATED[name]}, so files scored under the old name are not "
            f"continued (docs/scorers.md)")


def key_env(name: str) -> str | None:
    """The environment variable holding scorer ``name``'s API key (None: it needs none)."""
    name = canonical(name)
    return _REGISTRY[name].key_env if name in _REGISTRY else None


def measures(scorer: str) -> tuple[Measure, ...] | None:
    """What the scorer named ``scorer`` measures: a registry name or the name it writes into
    each Score (``judge-hexphi:gpt-4o``, ``regard:sasha/regardv3``); None when unknown."""
    known = [n for n in (*_REGISTRY, *DEPRECATED) if scorer == n or scorer.startswith(n + ":")]
    return _REGISTRY[canonical(max(known, key=len))].measures if known else None


def measure_for(scorer: str, benchmark: str) -> Measure:
    """The measure of ``scorer``'s numbers on ``benchmark``, from their declarations; a scorer
    we don't know is taken to measure what the benchmark's paper measured."""
    from ..benchmarks import declared

    bench = declared(benchmark)
    fits = bench.measures if bench else ()
    offered = measures(scorer)
    if offered is None:
        if not fits:
            raise InputError(f"scorer {scorer!r} on benchmark {benchmark!r}: neither is known, "
                             f"so what the scores measure is not declared")
        return MEASURES[fits[0]]
    return next((m for kind in fits for m in offered if m.kind == kind), offered[0])


def names() -> list[str]:
    """Every current registry name, variants included (``judge-hexphi:local``); deprecated
    names are accepted too but not offered."""
    return sorted(_REGISTRY)


def scored_span(scorer_name: str) -> str | None:
    """What a scorer named ``scorer_name`` (as written in a Score) read of each generation:
    the span in its name, else its class's default; None for scorers without a span (judges)
    and names not in the registry."""
    head, found, rest = scorer_name.partition("(span=")
    if found:
        return rest.split(")", 1)[0]
    base = head.split(":", 1)[0]
    if base not in _REGISTRY:
        return None
    return getattr(_lookup(base)[0], "default_span", None)


def get_scorer_names() -> list[str]:
    """Base names (before any ``:variant``) a study file or ``--scorer`` may use."""
    return sorted({name.split(":")[0] for name in _REGISTRY})


def scorer_options(name: str) -> list[str]:
    """The options ``get_scorer(name, ...)`` accepts."""
    cls, fixed = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", *fixed)]


@functools.cache
def options_model(name: str) -> type[Options]:
    """The typed options of scorer ``name``, read from its constructor's signature."""
    from pydantic import create_model

    cls, _ = _lookup(name)
    hints = typing.get_type_hints(cls.__init__)
    params = inspect.signature(cls.__init__).parameters
    fields: Any = {p: (hints.get(p, Any), ... if params[p].default is inspect.Parameter.empty
                       else params[p].default) for p in scorer_options(name)}
    return create_model(f"{cls.__name__}Options", __base__=Options, **fields)


def check_options(name: str, options: dict[str, Any]) -> None:
    """Raise OptionError unless every option applies to scorer ``name`` and has its type."""
    accepted = scorer_options(name)
    for option in options:
        if option not in accepted:
            raise OptionError(option, f": does not apply to {name} (accepted: "
                                      f"{', '.join(accepted) or 'none'})")
    options_model(name)(**options)


def get_scorer(name: str, **options: Any):
    """A ready scorer; InputError for an unknown name, option, missing key or model."""
    cls, fixed = _lookup(name)
    try:
        check_options(name, options)
    except OptionError as exc:
        raise exc.located(f"scorer {name}: option") from None
    return cls(**fixed, **options)


def _lookup(name: str):
    name = canonical(name)
    if name not in _REGISTRY:
        raise InputError(f"--scorer {name}: unknown scorer; expected one of "
                         f"{', '.join(sorted(_REGISTRY))}")
    module, attr, fixed = _REGISTRY[name][:3]
    cls = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    return cls, fixed
