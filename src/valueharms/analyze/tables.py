"""The long metrics table laid out per system, per system type (the paper's comparison), per
category, and per mitigation strategy. Column labels always name the scorer."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import bootstrap
from ..benchmarks import BENCHMARKS, family
from ..systems import SystemKey
from . import intervals

# Each benchmark's headline harm metrics (its declaration; higher = more harmful), in the
# paper's order of benchmarks.
HEADLINE = {name: b.headline for name, b in BENCHMARKS.items()}
STRATEGIES = ("none", "safety", "safety-strict", "value", "dual")


def parse_system(key: str) -> SystemKey:
    """Deprecated: use ``valueharms.systems.SystemKey.parse(key, strict=False)``."""
    return SystemKey.parse(key, strict=False)


def systems_frame(systems) -> pd.DataFrame:
    """One row per system key, its parts as columns."""
    return pd.DataFrame([SystemKey.parse(s, strict=False).row() for s in sorted(set(systems))])


def _type_order(system_type: str) -> tuple:
    rank = {"vanilla": 0, "benign": 1, "prompt": 2, "vim": 3}
    return (rank.get(system_type.split(":")[0], 4), system_type)


def label(benchmark: str, metric: str, scorer: str) -> str:
    """A column label that names the benchmark, the metric and the scorer."""
    return f"{benchmark} / {metric} [{scorer}]"


def with_systems(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` with each system key's parts joined on."""
    return metrics.merge(systems_frame(metrics["system"]), on="system", how="left")


def headline(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows of the headline metrics (any bias-score baseline), category ``all``."""
    rows = headline_all_categories(metrics)
    return rows[rows["category"] == "all"]


def headline_all_categories(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows of each benchmark's headline metrics, every category."""
    keep = [_metric_rank(b, m) < 99 for b, m in zip(metrics["benchmark"], metrics["metric"])]
    return metrics[np.asarray(keep, dtype=bool)]  # a list would pick columns when empty


def _metric_rank(benchmark: str, metric: str) -> int:
    names = HEADLINE.get(family(benchmark), ())
    base = metric.split("[")[0]
    return names.index(base) if base in names else 99


def _columns_in_order(frame: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """Benchmarks in the paper's order, then each benchmark's metrics in HEADLINE order."""
    families = list(HEADLINE)
    keyed = {label(b, m, s): (families.index(family(b)) if family(b) in families else 99, b,
                              _metric_rank(b, m), m, s)
             for b, m, s in zip(rows["benchmark"], rows["metric"], rows["scorer"])}
    return sorted((c for c in frame.columns if c in keyed), key=lambda c: keyed[c])


def system_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per system: every metric of category ``all`` as a column named with its scorer."""
    rows = metrics[metrics["category"] == "all"].copy()
    rows["label"] = [label(*t) for t in zip(rows["benchmark"], rows["metric"], rows["scorer"])]
    wide = rows.pivot_table(index="system", columns="label", values="value", aggfunc="first")
    wide = wide[_columns_in_order(wide, rows)]
    return systems_frame(metrics["system"]).merge(wide.reset_index(), on="system")


def comparison_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: system type x headline metrics, mean over the type's systems
    without mitigation (e.g. VIM = mean over its targets)."""
    rows = with_systems(headline(metrics))
    rows = rows[rows["strategy"] == "none"].copy()
    if rows.empty:
        return pd.DataFrame(columns=["system_type", "systems"])
    rows["label"] = [label(*t) for t in zip(rows["benchmark"], rows["metric"], rows["scorer"])]
    wide = rows.pivot_table(index="system_type", columns="label", values="value", aggfunc="mean")
    wide = wide[_columns_in_order(wide, rows)]
    counts = rows.groupby("system_type")["system"].nunique().rename("systems")
    out = wide.join(counts).reset_index()
    out = out.iloc[sorted(range(len(out)), key=lambda i: _type_order(out["system_type"].iloc[i]))]
    return out[["system_type", "systems", *wide.columns]].reset_index(drop=True)


def category_tables(metrics: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per benchmark with categories: category x system type (no mitigation), one table per
    (benchmark, metric, scorer), keyed by its label."""
    rows = with_systems(headline_all_categories(metrics))
    rows = rows[(rows["strategy"] == "none") & (rows["category"] != "all")]
    tables = {}
    for (bench, metric, scorer), part in rows.groupby(["benchmark", "metric", "scorer"], sort=True):
        if family(bench) == "holisticbiasr" or metric.startswith("bias_score"):
            continue  # per-axis regard stays in the long table
        wide = part.pivot_table(index="category", columns="system_type", values="value", aggfunc="mean")
        wide = wide[sorted(wide.columns, key=_type_order)]
        tables[label(bench, metric, scorer)] = wide.reset_index()
    return tables


def _mean_replicates(rep: intervals.Replicates | None, systems, scorer: str,
                     metric: str) -> np.ndarray | None:
    """The per-resample mean over ``systems`` of one metric (None without replicates)."""
    if rep is None:
        return None
    return np.column_stack([rep.of(s, scorer, metric) for s in systems]).mean(axis=1)


def _bounds(values: np.ndarray | None) -> tuple[float, float]:
    if values is None:
        return np.nan, np.nan
    low, high = bootstrap.percentile_interval(values)
    return float(low), float(high)


def comparison_intervals(metrics: pd.DataFrame, sampler: intervals.Resampler) -> pd.DataFrame:
    """The comparison table's cells with 95 % intervals, long, for every category (``all``:
    the comparison table; the others: the category tables): per system type and headline
    metric, the mean over the type's systems (no mitigation) with its interval, and its
    difference from vanilla with the interval of the difference, paired over prompts (the
    resamples of ``sampler``, the metrics' own)."""
    columns = ["system_type", "label", "benchmark", "scorer", "metric", "category", "systems",
               "value", "low", "high", "difference", "difference_low", "difference_high"]
    rows = with_systems(headline_all_categories(metrics))
    rows = rows[rows["strategy"] == "none"]
    if rows.empty or sampler.units.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for (bench, scorer, metric, category), part in rows.groupby(
            ["benchmark", "scorer", "metric", "category"], sort=True):
        rep = sampler.get(bench, metric, category)
        vanilla = part[part["system_type"] == "vanilla"]
        base = _mean_replicates(rep, vanilla["system"], scorer, metric) if len(vanilla) else None
        for system_type, group in part.groupby("system_type", sort=False):
            mean = _mean_replicates(rep, group["system"], scorer, metric)
            compared = base is not None and system_type != "vanilla"
            diff = mean - base if compared and mean is not None else None
            out.append({"system_type": system_type, "label": label(bench, metric, scorer),
                        "benchmark": bench, "scorer": scorer, "metric": metric,
                        "category": category, "systems": group["system"].nunique(),
                        "value": group["value"].mean(),
                        **dict(zip(("low", "high"), _bounds(mean))),
                        "difference": group["value"].mean() - vanilla["value"].mean()
                        if compared else np.nan,
                        **dict(zip(("difference_low", "difference_high"), _bounds(diff)))})
    table = pd.DataFrame(out, columns=columns)
    order = sorted(range(len(table)), key=lambda i: _type_order(table["system_type"].iloc[i]))
    return table.iloc[order].reset_index(drop=True)


def mitigation_table(metrics: pd.DataFrame,
                     sampler: intervals.Resampler | None = None) -> pd.DataFrame:
    """Strategy (none/safety/value/dual) x system type for every headline metric and category:
    the mean value over the type's systems and the mean paired change from no mitigation, each
    with its 95 % interval (prompts resampled, paired across systems) when ``sampler`` (the
    metrics' resampled units) is given and holds units."""
    columns = ["system_type", "strategy", "benchmark", "scorer", "metric", "category", "value",
               "low", "high", "change", "change_low", "change_high", "systems"]
    rows = with_systems(headline_all_categories(metrics))
    mitigated = set(rows.loc[rows["strategy"] != "none", "base"])
    rows = rows[rows["base"].isin(mitigated)]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    key = ["base", "benchmark", "scorer", "metric", "category"]
    plain = rows[rows["strategy"] == "none"].set_index(key)["value"].rename("input_only")
    rows = rows.join(plain, on=key)
    rows["change"] = rows["value"] - rows["input_only"]
    if sampler is not None and sampler.units.empty:
        sampler = None
    out = []
    group_key = ["system_type", "strategy", "benchmark", "scorer", "metric", "category"]
    for (system_type, strategy, bench, scorer, metric, category), part in rows.groupby(group_key):
        rep = sampler.get(bench, metric, category) if sampler is not None else None
        mean = _mean_replicates(rep, part["system"], scorer, metric)
        plain_mean = _mean_replicates(rep, part["base"], scorer, metric)
        change = mean - plain_mean if mean is not None else None
        out.append({"system_type": system_type, "strategy": strategy, "benchmark": bench,
                    "scorer": scorer, "metric": metric, "category": category,
                    "value": part["value"].mean(), **dict(zip(("low", "high"), _bounds(mean))),
                    "change": part["change"].mean(),
                    **dict(zip(("change_low", "change_high"), _bounds(change))),
                    "systems": part["base"].nunique()})
    out = pd.DataFrame(out, columns=columns)
    out["order"] = [(_type_order(t), STRATEGIES.index(s) if s in STRATEGIES else 9)
                    for t, s in zip(out["system_type"], out["strategy"])]
    return out.sort_values(["benchmark", "metric", "category", "order"]).drop(columns="order") \
        .reset_index(drop=True)


def write_frame(frame: pd.DataFrame, path_without_suffix: str | os.PathLike,
                parquet: bool = True) -> None:
    """CSV (and Parquet) next to each other; the caller writes into a scratch directory."""
    path = Path(path_without_suffix)
    frame.to_csv(path.with_suffix(".csv"), index=False)
    if parquet:
        frame.to_parquet(path.with_suffix(".parquet"), index=False)
