"""Scoring: pluggable scorers behind one registry, one cache and one retrying client.

``get_scorer(name, **options)`` builds a scorer; its ``name`` attribute (e.g.
``judge-hexphi:gpt-4o``, ``offline-toxicity:jigsaw-bilstm+profanity``) is written into every
Score so a number always says what produced it. ``score.run.score_file`` scores a
generations file into a scores file, resumably.

Registry names (a ``:local`` suffix on a judge runs it on a local transformers model):

- ``perspective``             Google Perspective API (``$PERSPECTIVE_API_KEY``)
- ``offline-toxicity``        Jigsaw classifier + profanity SVM ensemble, offline
- ``regard``                  Hugging Face regard classifier (default sasha/regardv3)
- ``offline-regard``          VADER sentiment as a regard proxy, offline
- ``judge-hexphi``            1-5 harmfulness judge, OpenAI-compatible endpoint (``$OPENAI_API_KEY``)
- ``judge-beavertails``       flagged/unflagged judge, OpenAI-compatible endpoint
- ``judge-hexphi:local``, ``judge-beavertails:local``  the same rubrics on a local model
- ``judge-offline``           refusal phrases + MiniLM similarities, offline
- ``judge-refusal-heuristic`` deprecated: the refusal-phrase list alone (use judge-offline)
"""
from __future__ import annotations

import functools
import importlib
import inspect
import typing
from typing import Any

from ..config import OptionError, Options
from ..errors import InputError

# name -> (module, class, fixed arguments); modules are imported on use to keep start-up light.
_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "perspective": ("perspective", "Perspective", {}),
    "offline-toxicity": ("offline", "OfflineToxicity", {}),
    "regard": ("regard", "Regard", {}),
    "offline-regard": ("offline", "OfflineRegard", {}),
    "judge-hexphi": ("judges", "OpenAIJudge", {"kind": "hexphi"}),
    "judge-beavertails": ("judges", "OpenAIJudge", {"kind": "beavertails"}),
    "judge-hexphi:local": ("judges", "LocalJudge", {"kind": "hexphi"}),
    "judge-beavertails:local": ("judges", "LocalJudge", {"kind": "beavertails"}),
    "judge-offline": ("offline", "OfflineJudge", {}),
    "judge-refusal-heuristic": ("offline", "RefusalHeuristic", {}),  # deprecated: judge-offline
}


def names() -> list[str]:
    """Every registry name, variants included (``judge-hexphi:local``)."""
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
    if name not in _REGISTRY:
        raise InputError(f"--scorer {name}: unknown scorer; expected one of "
                         f"{', '.join(sorted(_REGISTRY))}")
    module, attr, fixed = _REGISTRY[name]
    cls = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    return cls, fixed
