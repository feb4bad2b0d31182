"""Schwartz's ten basic values, the four higher-order values, and the Profile record."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

VALUES: tuple[str, ...] = (
    "Achievement", "Benevolence", "Conformity", "Hedonism", "Power",
    "Security", "Self-direction", "Stimulation", "Tradition", "Universalism",
)
SHORT: dict[str, str] = dict(zip(
    ("Ach", "Ben", "Con", "Hed", "Pow", "Sec", "SD", "Sti", "Tra", "Uni"), VALUES))
HIGHER_ORDER: dict[str, tuple[str, ...]] = {
    "Openness_to_Change": ("Self-direction", "Stimulation"),
    "Self-Enhancement": ("Achievement", "Hedonism", "Power"),
    "Conservation": ("Conformity", "Security", "Tradition"),
    "Self-Transcendence": ("Benevolence", "Universalism"),
}
# The 14 "extreme" targets: each basic value alone, then each higher-order group.
EXTREME_MEMBERS: dict[str, tuple[str, ...]] = {
    **{short: (value,) for short, value in SHORT.items()}, **HIGHER_ORDER}

# PVQ-21 items of the European Social Survey, by value.
PVQ21_ITEMS: dict[str, tuple[str, ...]] = {
    "Achievement": ("ipshabta", "ipsucesa"),
    "Benevolence": ("iphlppla", "iplylfra"),
    "Conformity": ("ipfrulea", "ipbhprpa"),
    "Hedonism": ("ipgdtima", "impfuna"),
    "Power": ("impricha", "iprspota"),
    "Security": ("impsafea", "ipstrgva"),
    "Self-direction": ("ipcrtiva", "impfreea"),
    "Stimulation": ("impdiffa", "ipadvnta"),
    "Tradition": ("ipmodsta", "imptrada"),
    "Universalism": ("ipeqopta", "ipudrsta", "impenva"),
}

# The PVQ-40 scoring key (Schwartz et al., 2001): the item numbers of each value's portraits.
PVQ40_KEY: dict[str, tuple[int, ...]] = {
    "Achievement": (4, 13, 24, 32),
    "Benevolence": (12, 18, 27, 33),
    "Conformity": (7, 16, 28, 36),
    "Hedonism": (10, 26, 37),
    "Power": (2, 17, 39),
    "Security": (5, 14, 21, 31, 35),
    "Self-direction": (1, 11, 22, 34),
    "Stimulation": (6, 15, 30),
    "Tradition": (9, 20, 25, 38),
    "Universalism": (3, 8, 19, 23, 29, 40),
}

PVQ_SCALE: dict[int, str] = {
    1: "Not like me at all", 2: "Not like me", 3: "A little like me",
    4: "Somewhat like me", 5: "Like me", 6: "Very much like me",
}
SCORE_MIN, SCORE_MAX = 1.0, 6.0


def resolve_value(name: str) -> str:
    """Accept a value's full name (any case) or its short name; return the full name."""
    if name in SHORT:
        return SHORT[name]
    for value in VALUES:
        if value.lower() == name.lower():
            return value
    raise InputError(f"unknown value {name!r}; expected one of {', '.join(VALUES)} "
                     f"or {', '.join(SHORT)}")


@dataclass(frozen=True)
class Profile:
    """A named value profile: 10 scores on 1..6 in canonical order (6 = very important)."""

    name: str
    scores: tuple[float, ...]
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        scores = tuple(float(s) for s in self.scores)
        if len(scores) != len(VALUES):
            raise InputError(f"profile {self.name!r}: expected {len(VALUES)} scores, "
                             f"got {len(scores)}")
        for value, score in zip(VALUES, scores):
            if not SCORE_MIN <= score <= SCORE_MAX:
                raise InputError(f"profile {self.name!r}: {value} = {score} is outside "
                                 f"{SCORE_MIN:g}..{SCORE_MAX:g}")
        object.__setattr__(self, "scores", scores)

    def __getitem__(self, value: str) -> float:
        return self.scores[VALUES.index(resolve_value(value))]

    def as_dict(self) -> dict[str, float]:
        return dict(zip(VALUES, self.scores))

    @classmethod
    def from_mapping(cls, name: str, scores: Mapping[str, Any],
                     meta: Mapping[str, Any] | None = None) -> Profile:
        missing = [v for v in VALUES if v not in scores]
        if missing:
            raise InputError(f"profile {name!r}: missing value(s) {', '.join(missing)}")
        try:
            return cls(name, tuple(float(scores[v]) for v in VALUES), meta or {})
        except (TypeError, ValueError) as exc:
            raise InputError(f"profile {name!r}: non-numeric score ({exc})") from None


def extreme(members: Sequence[str], high: float = 6.0, low: float = 1.0) -> tuple[float, ...]:
    """Scores with ``high`` on ``members`` and ``low`` on every other value."""
    return tuple(high if v in members else low for v in VALUES)
