"""The long metrics table laid out per system, per system type (the paper's comparison), per
category, and per mitigation strategy. Column labels always name the scorer."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..benchmarks import BENCHMARKS, family
from ..systems import SystemKey

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


def mitigation_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Strategy (none/safety/value/dual) x system type for every headline metric and category:
    the mean value over the type's systems and the mean paired change from no mitigation."""
    rows = with_systems(headline_all_categories(metrics))
    mitigated = set(rows.loc[rows["strategy"] != "none", "base"])
    rows = rows[rows["base"].isin(mitigated)]
    if rows.empty:
        return pd.DataFrame(columns=["system_type", "strategy", "benchmark", "scorer", "metric",
                                     "category", "value", "change", "systems"])
    key = ["base", "benchmark", "scorer", "metric", "category"]
    plain = rows[rows["strategy"] == "none"].set_index(key)["value"].rename("input_only")
    rows = rows.join(plain, on=key)
    rows["change"] = rows["value"] - rows["input_only"]
    out = (rows.groupby(["system_type", "strategy", "benchmark", "scorer", "metric", "category"])
           .agg(value=("value", "mean"), change=("change", "mean"), systems=("base", "nunique"))
           .reset_index())
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
