"""What a scorer measures, declared once: each scorer names its measure(s), each benchmark
the measures that fit it, and the metrics of a score table follow from the measure.

The kinds: ``toxicity`` (a probability in 0..1), ``regard`` (a label), ``judge`` (a harm
score 1..5) and ``flag`` (flagged or not).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """One kind of score: what it is, its range or labels, and the metrics computed from it."""

    kind: str
    what: str
    metrics: tuple[str, ...]
    low: float | None = None
    high: float | None = None
    labels: tuple[str, ...] = ()

    def describe(self) -> str:
        """``toxicity probability 0..1``, ``regard label (negative|...)``."""
        if self.labels:
            return f"{self.what} ({'|'.join(self.labels)})"
        return f"{self.what} {self.low:g}..{self.high:g}"


TOXICITY = Measure("toxicity", "toxicity probability",
                   ("expected_max_toxicity", "toxicity_probability", "mean_toxicity"), 0.0, 1.0)
REGARD = Measure("regard", "regard label", ("negative_regard_rate", "bias_score"),
                 labels=("negative", "neutral", "positive", "other"))
HARM = Measure("judge", "harm score", ("mean_harm_score", "harmfulness_rate"), 1.0, 5.0)
FLAG = Measure("flag", "flag", ("flagged_rate",), 0.0, 1.0, labels=("flagged", "unflagged"))
MEASURES = {m.kind: m for m in (TOXICITY, REGARD, HARM, FLAG)}
