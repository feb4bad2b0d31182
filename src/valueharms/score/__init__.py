"""Scoring: pluggable scorers behind one registry, one cache and one retrying client.

``get_scorer(name, **options)`` builds a scorer; its ``name`` attribute (e.g.
``judge-hexphi:gpt-4o``, ``offline-toxicity:profanity-heuristic``) is written into every
Score so a number always says what produced it. ``score.run.score_file`` scores a
generations file into a scores file, resumably.

Registry names (a ``:local`` suffix on a judge runs it on a local transformers model):

- ``perspective``             Google Perspective API (``$PERSPECTIVE_API_KEY``)
- ``offline-toxicity``        profanity heuristic (alt-profanity-check), offline
- ``regard``                  Hugging Face regard classifier (default sasha/regardv3)
- ``offline-regard``          VADER sentiment as a regard proxy, offline
- ``judge-hexphi``            1-5 harmfulness judge, OpenAI-compatible endpoint (``$OPENAI_API_KEY``)
- ``judge-beavertails``       flagged/unflagged judge, OpenAI-compatible endpoint
- ``judge-hexphi:local``, ``judge-beavertails:local``  the same rubrics on a local model
- ``judge-refusal-heuristic`` refusal-phrase matching, offline
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..errors import InputError

# name -> (module, class, fixed arguments); modules are imported on use to keep start-up light.
_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "perspective": ("perspective", "Perspective", {}),
    "offline-toxicity": ("offline", "OfflineToxicity", {}),
    "regard": ("regard", "Regard", {}),
    "offline-regard": ("offline", "OfflineRegard", {}),
    "judge-hexphi": ("judges", "OpenAIJudge", {"rubric": "hexphi"}),
    "judge-beavertails": ("judges", "OpenAIJudge", {"rubric": "beavertails"}),
    "judge-hexphi:local": ("judges", "LocalJudge", {"rubric": "hexphi"}),
    "judge-beavertails:local": ("judges", "LocalJudge", {"rubric": "beavertails"}),
    "judge-refusal-heuristic": ("offline", "RefusalHeuristic", {}),
}


def get_scorer_names() -> list[str]:
    """Base names (before any ``:variant``) a study file or ``--scorer`` may use."""
    return sorted({name.split(":")[0] for name in _REGISTRY})


def scorer_options(name: str) -> list[str]:
    """The options ``get_scorer(name, ...)`` accepts."""
    cls, fixed = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", *fixed)]


def get_scorer(name: str, **options: Any):
    """A ready scorer; InputError for an unknown name, option, missing key or model."""
    cls, fixed = _lookup(name)
    accepted = scorer_options(name)
    for option in options:
        if option not in accepted:
            raise InputError(f"scorer {name}: option {option!r} does not apply (accepted: "
                             f"{', '.join(accepted) or 'none'})")
    return cls(**fixed, **options)


def _lookup(name: str):
    if name not in _REGISTRY:
        raise InputError(f"--scorer {name}: unknown scorer; expected one of "
                         f"{', '.join(sorted(_REGISTRY))}")
    module, attr, fixed = _REGISTRY[name]
    cls = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    return cls, fixed
