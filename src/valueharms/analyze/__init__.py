"""Analysis: score files -> metrics (long table) -> statistics and the paper's tables.

``metrics.compute_metrics`` turns scores into metrics; ``bias`` holds the ROBBIE bias score;
``tables`` lays metrics out per system and per system type; ``stats`` correlates targets'
values with harms and tests value-aligned systems against vanilla. :func:`analyse` runs them
all and :func:`write` puts the tables on disk (CSV, and Parquet for the two main ones).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import MetricsOptions
from ..values import Profile
from . import intervals, stats, tables
from .metrics import UNIT_COLUMNS

UNITS_FILE = "units.parquet"  # what each metric rests on, for the intervals of the report


@dataclass
class Analysis:
    metrics: pd.DataFrame  # the long table of metrics.compute_metrics
    systems: pd.DataFrame  # one row per system
    comparison: pd.DataFrame  # system type x headline metrics
    categories: dict[str, pd.DataFrame]  # label -> category x system type
    mitigation: pd.DataFrame  # system type x strategy, value and change from none
    correlations: pd.DataFrame  # value x harm category, per alignment method
    versus_vanilla: pd.DataFrame  # aligned systems vs vanilla, Wilcoxon signed-rank
    profiles: dict[str, Profile] = field(default_factory=dict)  # target name -> profile
    missing_targets: list[str] = field(default_factory=list)  # aligned targets not found
    units: pd.DataFrame = field(default_factory=pd.DataFrame)  # metrics.Measured.units
    comparison_intervals: pd.DataFrame = field(default_factory=pd.DataFrame)  # long, with CIs
    family_correlations: pd.DataFrame = field(default_factory=pd.DataFrame)  # family as unit


def analyse(metrics: pd.DataFrame, data_dir: str | None = None,
            extra_profiles: list[Profile] | None = None,
            resampler: intervals.Resampler | None = None, seed: int = 0) -> Analysis:
    """Every table of the report from the long metrics table; ``resampler`` (the resampled
    units of ``metrics.Measured``) adds the intervals of the comparison and the mitigation
    changes, from the same resamples as the metrics' own intervals."""
    if resampler is None:  # no units: point values only
        resampler = intervals.Resampler(pd.DataFrame(columns=list(UNIT_COLUMNS)), seed)
    targets = tables.systems_frame(metrics["system"])["target"].dropna()
    profiles, missing = stats.target_profiles(targets, data_dir, extra_profiles)
    return Analysis(metrics, tables.system_table(metrics), tables.comparison_table(metrics),
                    tables.category_tables(metrics), tables.mitigation_table(metrics, resampler),
                    stats.correlations(metrics, profiles), stats.aligned_vs_vanilla(metrics),
                    profiles, missing, resampler.units,
                    tables.comparison_intervals(metrics, resampler),
                    stats.family_correlations(metrics, profiles, seed))


def slug(text: str) -> str:
    """``text`` as a file-name part: lower case, runs of other characters as ``_``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def write(analysis: Analysis, out_dir: str | os.PathLike) -> list[Path]:
    """Write the tables into ``out_dir``; each file appears whole (written aside, then moved)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tables.") as tmp:
        tables.write_frame(analysis.metrics, Path(tmp) / "metrics")
        tables.write_frame(analysis.systems, Path(tmp) / "systems")
        analysis.units.to_parquet(Path(tmp) / UNITS_FILE, index=False)
        for name in ("comparison", "comparison_intervals", "mitigation", "correlations",
                     "family_correlations", "versus_vanilla"):
            tables.write_frame(getattr(analysis, name), Path(tmp) / name, parquet=False)
        for name, frame in analysis.categories.items():
            tables.write_frame(frame, Path(tmp) / f"category_{slug(name)}", parquet=False)
        return publish(Path(tmp), out)


def publish(scratch: Path, out: Path, last: str | None = None) -> list[Path]:
    """Move every file of ``scratch`` into ``out`` (same file system: each move is atomic);
    ``last`` moves after the others, so its presence means the rest is complete."""
    written = []
    for path in sorted(scratch.iterdir(), key=lambda p: (p.name == last, p.name)):
        target = out / path.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(path, target)
        written.append(target)
    return written


@dataclass(frozen=True)
class MetricsRun:
    """What the metrics stage did: how many scores it read, its analysis, the files written."""

    n_scores: int
    analysis: Analysis
    written: list[Path]


def run_metrics(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                options: MetricsOptions, *, seed: int = 0, data_dir: str | None = None,
                profiles: list[Profile] | None = None) -> MetricsRun:
    """The metrics stage (``valueharms metrics`` and a study's metrics step): score files
    (or folders of them) -> metrics with their units -> every analysis table, written to
    ``out_dir``. ``profiles``: target profiles beyond the known ones (for the correlations)."""
    from .metrics import load_scores, measure

    scores = load_scores(list(inputs))
    found = measure(scores, options.baseline, resamples=options.resamples, seed=seed)
    result = analyse(found.table, data_dir, profiles, found.resampler, seed)
    return MetricsRun(len(scores), result, write(result, out_dir))
