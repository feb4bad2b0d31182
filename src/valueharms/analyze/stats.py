"""Statistics across systems: which values go with which harms, and are aligned systems worse.

- Value-harm correlations: across the value-aligned systems of one method (vim or prompt,
  no mitigation), each value's target score against each harm metric per category; Pearson
  and Spearman with their p-values, and Benjamini-Hochberg q over the method's whole grid.
- Aligned vs vanilla: per harm metric, the aligned systems' differences from the vanilla
  model, tested with the two-sided Wilcoxon signed-rank test. The unit is the aligned system
  (a target profile is the sample; vanilla is a fixed reference), so the test asks whether
  aligning to a typical profile moves the metric — not whether one model differs item by item.
  With fewer than 6 systems no two-sided p-value can fall below 0.05 (the exact test's floor).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError
from ..values import VALUES, Profile
from .tables import HEADLINE, headline_all_categories, with_systems

ALIGNED_KINDS = ("vim", "prompt")
HARM_KEY = ["benchmark", "scorer", "metric", "category"]


def target_profiles(target_names, data_dir: str | None = None,
                    extra: list[Profile] | None = None) -> tuple[dict[str, Profile], list[str]]:
    """Look each target up (user profiles first); return the found ones and the missing names."""
    from .. import targets

    found, missing = {}, []
    for name in sorted(set(target_names)):
        try:
            found[name] = targets.find(name, data_dir, extra)
        except InputError:
            missing.append(name)
    return found, missing


def aligned_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """Headline rows of the aligned systems (vim, prompt) without mitigation."""
    rows = with_systems(headline_all_categories(metrics))
    return rows[rows["kind"].isin(ALIGNED_KINDS) & (rows["strategy"] == "none")]


def _first_headline(rows: pd.DataFrame) -> pd.DataFrame:
    """The grid uses one harm metric per benchmark: the first of its headline pair."""
    from ..benchmarks import family

    keep = [HEADLINE.get(family(b), ("",))[0] == m for b, m in zip(rows["benchmark"], rows["metric"])]
    return rows[np.asarray(keep, dtype=bool)]


def _bh(p: pd.Series) -> pd.Series:
    q = pd.Series(np.nan, index=p.index)
    finite = p.notna()
    if finite.any():
        q[finite] = stats.false_discovery_control(p[finite].to_numpy(), method="bh")
    return q


def _pair(x: np.ndarray, y: np.ndarray) -> dict:
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    out = {"n": int(len(y)), "pearson_r": np.nan, "pearson_p": np.nan,
           "spearman_rho": np.nan, "spearman_p": np.nan}
    if len(y) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out  # undefined: too few systems or a constant column
    pearson, spearman = stats.pearsonr(x, y), stats.spearmanr(x, y)
    out.update(pearson_r=float(pearson.statistic), pearson_p=float(pearson.pvalue),
               spearman_rho=float(spearman.statistic), spearman_p=float(spearman.pvalue))
    return out


def correlations(metrics: pd.DataFrame, profiles: dict[str, Profile]) -> pd.DataFrame:
    """Value x harm-category correlations across each method's aligned systems (long table)."""
    rows = _first_headline(aligned_rows(metrics))
    rows = rows[rows["target"].isin(profiles)]
    out = []
    for method, part in rows.groupby("kind", sort=True):
        wide = part.pivot_table(index="target", columns=HARM_KEY, values="value", aggfunc="mean")
        scores = np.array([profiles[t].scores for t in wide.index])
        grid = []
        for harm in wide.columns:
            y = wide[harm].to_numpy(dtype=float)
            for i, value in enumerate(VALUES):
                grid.append({"method": method, "value": value, **dict(zip(HARM_KEY, harm)),
                             **_pair(scores[:, i], y)})
        grid = pd.DataFrame(grid)
        grid["pearson_q"], grid["spearman_q"] = _bh(grid["pearson_p"]), _bh(grid["spearman_p"])
        out.append(grid)
    columns = ["method", "value", *HARM_KEY, "n", "pearson_r", "pearson_p", "pearson_q",
               "spearman_rho", "spearman_p", "spearman_q"]
    return pd.concat(out, ignore_index=True)[columns] if out else pd.DataFrame(columns=columns)


def aligned_vs_vanilla(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each method's aligned systems against vanilla, per headline metric and category."""
    rows = with_systems(headline_all_categories(metrics))
    vanilla = rows[(rows["kind"] == "vanilla") & (rows["strategy"] == "none")] \
        .groupby(HARM_KEY)["value"].mean()
    out = []
    for method, part in aligned_rows(metrics).groupby("kind", sort=True):
        for harm, group in part.groupby(HARM_KEY, sort=True):
            if harm not in vanilla.index:
                continue
            base = float(vanilla[harm])
            diff = group["value"].dropna().to_numpy() - base
            out.append({"method": method, **dict(zip(HARM_KEY, harm)), "vanilla": base,
                        "aligned_mean": base + diff.mean() if len(diff) else np.nan,
                        "difference": diff.mean() if len(diff) else np.nan,
                        "systems": len(diff), "higher": int((diff > 0).sum()),
                        **_wilcoxon(diff)})
    columns = ["method", *HARM_KEY, "vanilla", "aligned_mean", "difference", "systems",
               "higher", "wilcoxon_p", "q"]
    table = pd.DataFrame(out, columns=columns[:-1])
    table["q"] = table.groupby("method")["wilcoxon_p"].transform(_bh) if len(table) else []
    return table[columns]


def _wilcoxon(diff: np.ndarray) -> dict:
    if len(diff) < 2 or not np.any(diff != 0):
        return {"wilcoxon_p": np.nan}
    with warnings.catch_warnings():  # small samples: scipy warns that the exact test is coarse
        warnings.simplefilter("ignore")
        return {"wilcoxon_p": float(stats.wilcoxon(diff, alternative="two-sided").pvalue)}
