"""Statistics across systems: which values go with which harms, and are aligned systems worse.

- Value-harm correlations: across the value-aligned systems of one method (vim or prompt,
  no mitigation), each value's target score against each harm metric per category; Pearson
  and Spearman with their p-values, and Benjamini-Hochberg q over the method's whole grid
  (10 values x every harm metric and category of the method).
- Aligned vs vanilla: per harm metric, the aligned systems' differences from the vanilla
  model. The unit is the aligned system (a target profile is the sample; vanilla is a fixed
  reference), so the test asks whether aligning to a typical profile moves the metric — not
  whether one model differs item by item.

Honest small samples: with fewer than MIN_SYSTEMS systems no p-value is computed (the row
says "too few systems"; with n = 3 any monotone pattern has Pearson r near 1 and p near 0).
From MIN_SYSTEMS to EXACT_BELOW systems the p-values come from ``scipy.stats.permutation_test``
(all permutations when there are at most EXACT_LIMIT of them, else PERMUTATIONS random ones;
the ``test`` column says which); from EXACT_BELOW systems on, scipy's asymptotic tests.
Every target-level p-value treats the targets as independent draws. The paper's targets are 14
families (an extreme and its 10 nearest survey respondents), which are not independent:
``family_correlations`` repeats the analysis with the family as the unit.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .. import bootstrap
from ..errors import InputError
from ..values import VALUES, Profile
from .tables import HEADLINE, headline_all_categories, with_systems

ALIGNED_KINDS = ("vim", "prompt")
HARM_KEY = ["benchmark", "scorer", "metric", "category"]
MIN_SYSTEMS = 8  # fewer systems (or families): no p-value, never significant
EXACT_BELOW = 30  # below this many systems: permutation p-values
EXACT_LIMIT = 50_000  # enumerate every permutation up to this many (8 systems: 8! = 40,320)
PERMUTATIONS = 10_000  # else this many random ones
FAMILY_RESAMPLES = 2000
TOO_FEW = "too few systems"
INDEPENDENT = "assumes independent targets"


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


def _r_with(y: np.ndarray):
    """Pearson r of permuted x with a fixed y (permuting one sample is all the pairings);
    y is standardised once, so each permutation costs one centring and one dot product."""
    z = (y - y.mean()) / np.sqrt(((y - y.mean()) ** 2).sum())

    def statistic(x: np.ndarray, axis: int = -1) -> np.ndarray:
        x = np.moveaxis(x, axis, -1)
        x = x - x.mean(axis=-1, keepdims=True)
        return (x @ z) / np.sqrt((x * x).sum(axis=-1))
    return statistic


def _resamples(n_permutations: float) -> tuple[float, str]:
    """How many permutations to draw (inf: all of them) and how the test column says it."""
    if n_permutations <= EXACT_LIMIT:
        return np.inf, "exact permutation"
    return PERMUTATIONS, f"permutation ({PERMUTATIONS:,} random)"


def correlation_test(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """Pearson and Spearman between x and y with honest p-values (see the module docstring)."""
    n = len(y)
    out = {"n": int(n), "pearson_r": np.nan, "pearson_p": np.nan, "spearman_rho": np.nan,
           "spearman_p": np.nan, "test": "undefined"}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out  # undefined: too few systems or a constant column
    pearson, spearman = stats.pearsonr(x, y), stats.spearmanr(x, y)
    out.update(pearson_r=float(pearson.statistic), spearman_rho=float(spearman.statistic))
    if n < MIN_SYSTEMS:
        return {**out, "test": TOO_FEW}
    if n >= EXACT_BELOW:
        return {**out, "pearson_p": float(pearson.pvalue), "spearman_p": float(spearman.pvalue),
                "test": "asymptotic"}
    resamples, test = _resamples(float(np.prod(np.arange(1, n + 1, dtype=float))))
    p = [stats.permutation_test((a,), _r_with(b), permutation_type="pairings", vectorized=True,
                                n_resamples=resamples, rng=seed).pvalue
         for a, b in ((x, y), (stats.rankdata(x), stats.rankdata(y)))]
    return {**out, "pearson_p": float(p[0]), "spearman_p": float(p[1]), "test": test}


def difference_test(diff: np.ndarray, seed: int = 0) -> dict:
    """Is the mean difference from vanilla zero? Sign-flip permutation test below EXACT_BELOW
    systems, Wilcoxon signed-rank from there; no p-value below MIN_SYSTEMS."""
    n = len(diff)
    if n < MIN_SYSTEMS:
        return {"p": np.nan, "test": TOO_FEW}
    if not np.any(diff != 0):
        return {"p": np.nan, "test": "undefined"}
    if n >= EXACT_BELOW:
        return {"p": float(stats.wilcoxon(diff, alternative="two-sided").pvalue),
                "test": "Wilcoxon signed-rank"}
    resamples, test = _resamples(2.0 ** n)
    result = stats.permutation_test((diff,), lambda d, axis: d.mean(axis=axis), vectorized=True,
                                    permutation_type="samples", n_resamples=resamples, rng=seed)
    return {"p": float(result.pvalue), "test": f"sign-flip {test}"}


def _grid(metrics: pd.DataFrame, profiles: dict[str, Profile]):
    """(method, value, harm key, targets, value scores, harm values) over each method's grid,
    the targets restricted to those with this harm measured."""
    rows = _first_headline(aligned_rows(metrics))
    rows = rows[rows["target"].isin(profiles)]
    for method, part in rows.groupby("kind", sort=True):
        wide = part.pivot_table(index="target", columns=HARM_KEY, values="value", aggfunc="mean")
        scores = np.array([profiles[t].scores for t in wide.index])
        for harm in wide.columns:
            y = wide[harm].to_numpy(dtype=float)
            ok = ~np.isnan(y)
            for i, value in enumerate(VALUES):
                yield method, value, harm, wide.index[ok], scores[ok, i], y[ok]


def correlations(metrics: pd.DataFrame, profiles: dict[str, Profile]) -> pd.DataFrame:
    """Value x harm-category correlations across each method's aligned systems (long table)."""
    columns = ["method", "value", *HARM_KEY, "n", "pearson_r", "pearson_p", "pearson_q",
               "spearman_rho", "spearman_p", "spearman_q", "test", "assumes"]
    grid = pd.DataFrame([{"method": method, "value": value, **dict(zip(HARM_KEY, harm)),
                          **correlation_test(x, y)}
                         for method, value, harm, _, x, y in _grid(metrics, profiles)])
    if grid.empty:
        return pd.DataFrame(columns=columns)
    by_method = grid.groupby("method")
    grid["pearson_q"] = by_method["pearson_p"].transform(_bh)
    grid["spearman_q"] = by_method["spearman_p"].transform(_bh)
    grid["assumes"] = np.where(grid["pearson_p"].notna(), INDEPENDENT, "")
    return grid[columns]


def family_of(profile: Profile) -> str | None:
    """The extreme a paper target belongs to (an extreme is its own family), else None."""
    meta = profile.meta or {}
    return meta.get("extreme") or (profile.name if meta.get("kind") == "extreme" else None)


def family_bootstrap_r(x: np.ndarray, y: np.ndarray, families, resamples: int = FAMILY_RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the target-level Pearson r, resampling whole families.

    A resample draws families with replacement and keeps all their targets: each target's
    weight is the number of times its family was drawn, and r is the weighted r.
    """
    codes, names = pd.factorize(pd.Series(list(families)))
    drawn = bootstrap.unit_weights(len(names), resamples, np.random.default_rng(seed))
    w = drawn[:, codes]
    total = w.sum(axis=1, keepdims=True)
    dx = x[None, :] - (w @ x)[:, None] / total
    dy = y[None, :] - (w @ y)[:, None] / total
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * dx * dy).sum(axis=1) / np.sqrt((w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1))
    low, high = bootstrap.percentile_interval(r)
    return float(low), float(high)


def family_correlations(metrics: pd.DataFrame, profiles: dict[str, Profile],
                        seed: int = 0) -> pd.DataFrame:
    """The correlations with the target family as the unit, when targets come in families.

    Per method, value and harm: Pearson r over the family means (with its p-value, by the
    rules of ``correlation_test`` with families in place of systems, and BH q over the
    method's grid), and the interval of the target-level r from resampling whole families.
    Empty when no family has two or more targets (the targets are then the units).
    """
    columns = ["method", "value", *HARM_KEY, "families", "targets", "family_r", "family_p",
               "family_q", "test", "r_low", "r_high"]
    family = {t: family_of(p) for t, p in profiles.items()}
    sizes = pd.Series([f for f in family.values() if f]).value_counts()
    if sizes.empty or sizes.max() < 2:
        return pd.DataFrame(columns=columns)
    out = []
    for method, value, harm, targets, x, y in _grid(metrics, profiles):
        fam = np.array([family[t] for t in targets], dtype=object)
        keep = np.array([f is not None for f in fam], dtype=bool)
        frame = pd.DataFrame({"f": fam[keep], "x": x[keep], "y": y[keep]})
        means = frame.groupby("f")[["x", "y"]].mean()
        test = correlation_test(means["x"].to_numpy(), means["y"].to_numpy(), seed)
        low, high = family_bootstrap_r(frame["x"].to_numpy(), frame["y"].to_numpy(), frame["f"],
                                       seed=seed) if len(means) >= 2 else (np.nan, np.nan)
        out.append({"method": method, "value": value, **dict(zip(HARM_KEY, harm)),
                    "families": len(means), "targets": int(keep.sum()),
                    "family_r": test["pearson_r"], "family_p": test["pearson_p"],
                    "test": test["test"].replace("systems", "families"),
                    "r_low": low, "r_high": high})
    table = pd.DataFrame(out, columns=[c for c in columns if c != "family_q"])
    table["family_q"] = table.groupby("method")["family_p"].transform(_bh) if len(table) else []
    return table[columns]


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
                        **difference_test(diff)})
    columns = ["method", *HARM_KEY, "vanilla", "aligned_mean", "difference", "systems",
               "higher", "p", "test", "q"]
    table = pd.DataFrame(out, columns=columns[:-1])
    table["q"] = table.groupby("method")["p"].transform(_bh) if len(table) else []
    return table[columns]
