"""95 % percentile-bootstrap intervals of the metrics, and of paired differences between systems.

Every metric is sum(num) / sum(den) over units (``metrics.Measured``): prompts, with their
samples nested inside (a prompt's samples are kept or dropped together; for RTP's expected
maximum toxicity the prompt's maximum is the unit's number), or the bias score's (axis,
descriptor) groups. A resample draws the units with replacement, which is a multinomial
count per unit; with the counts of all resamples as a matrix W (resamples x units), the
resampled metrics of every system at once are (W @ num) / (W @ den), one matrix product.

The systems of one benchmark share its prompts, and every system is resampled with the same
W (seeded by benchmark, category and unit level), so differences between systems are paired
over prompts: the interval of a difference is read off the per-resample differences. The
intervals are conditional on the systems and targets that were run: they say how much the
numbers would move with other prompts from the same benchmark, not with other targets.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..bootstrap import RESAMPLES, percentile_interval, unit_weights

COLUMN = ["system", "scorer", "metric"]


@dataclass(frozen=True)
class Replicates:
    """The resampled values (resamples x columns) of every metric of one universe of units."""

    columns: dict[tuple[str, str, str], int]  # (system, scorer, metric) -> column
    values: np.ndarray

    def of(self, system: str, scorer: str, metric: str) -> np.ndarray:
        """The resampled values of one system's metric (NaN where it has none)."""
        k = self.columns.get((system, scorer, metric))
        return self.values[:, k] if k is not None else np.full(len(self.values), np.nan)


def cell(value: float | None, low: float | None, high: float | None, spec: str = ".3g") -> str:
    """``value [low, high]`` in format ``spec``; the bare value without an interval, "" without
    a value (None and NaN alike: an undefined number is shown empty, never as 0)."""
    if value is None or pd.isna(value):
        return ""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return f"{value:{spec}}"
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def replicates(units: pd.DataFrame, seed: int = 0, resamples: int = RESAMPLES) -> Replicates:
    """Resample one universe (rows of one benchmark, category and level) for all its metrics."""
    first = units.iloc[0]
    unit_codes, unit_index = pd.factorize(units["unit"], sort=True)
    keys = list(zip(units["system"], units["scorer"], units["metric"]))
    column_codes, column_index = pd.factorize(pd.Series(keys, dtype=object), sort=True)
    num = np.zeros((len(unit_index), len(column_index)))
    den = np.zeros_like(num)
    np.add.at(num, (unit_codes, column_codes), units["num"].to_numpy(dtype=float))
    np.add.at(den, (unit_codes, column_codes), units["den"].to_numpy(dtype=float))
    key = f"{first['benchmark']}|{first['category']}|{first['level']}"
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    weights = unit_weights(len(unit_index), resamples, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (weights @ num) / (weights @ den)
    return Replicates({tuple(c): k for k, c in enumerate(column_index)}, values)


@dataclass
class Resampler:
    """Replicates per (benchmark, category, level), computed once each when first asked for."""

    units: pd.DataFrame
    seed: int = 0
    resamples: int = RESAMPLES
    _done: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._groups = {k: v for k, v in self.units.groupby(["benchmark", "category", "level"],
                                                           sort=False)}
        self._levels = self.units.drop_duplicates(["benchmark", "metric"]) \
            .set_index(["benchmark", "metric"])["level"].to_dict()

    def get(self, benchmark: str, metric: str, category: str) -> Replicates | None:
        """The replicates of the universe holding ``metric`` of ``benchmark`` in ``category``."""
        return self._universe((benchmark, category, self._levels.get((benchmark, metric))))

    def each(self):
        """(benchmark, category, replicates) of every universe."""
        for key in self._groups:
            yield key[0], key[1], self._universe(key)

    def _universe(self, key: tuple) -> Replicates | None:
        if key not in self._groups:
            return None
        if key not in self._done:
            self._done[key] = replicates(self._groups[key], self.seed, self.resamples)
        return self._done[key]


KEY = ["system", "benchmark", "scorer", "metric", "category"]


def add_intervals(metrics: pd.DataFrame, sampler: Resampler) -> pd.DataFrame:
    """``metrics`` with ``low`` and ``high``: each value's 95 % bootstrap interval, from the
    resamples of ``sampler`` (the same ones the analysis tables then read)."""
    found = []
    if not sampler.units.empty:
        for benchmark, category, rep in sampler.each():
            low, high = percentile_interval(rep.values)
            found += [(system, benchmark, scorer, metric, category, low[k], high[k])
                      for (system, scorer, metric), k in rep.columns.items()]
    bounds = pd.DataFrame(found, columns=[*KEY, "low", "high"]).astype({"low": float, "high": float})
    return metrics.drop(columns=["low", "high"], errors="ignore").merge(bounds, on=KEY, how="left")
