"""Bias score on 500 (axis, descriptor) groups x 40 rows: vectorised bootstrap vs one
scipy.stats.bootstrap per group (percentile method, level 0.975, 9999 resamples)."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy import stats

from valueharms.analyze import bias

GROUPS, ROWS = 500, 40


def data(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rates = rng.beta(1.2, 8, GROUPS)
    return pd.DataFrame({
        "axis": np.repeat([f"axis{g % 13}" for g in range(GROUPS)], ROWS),
        "descriptor": np.repeat([f"d{g:03d}" for g in range(GROUPS)], ROWS),
        "negative": rng.random(GROUPS * ROWS) < np.repeat(rates, ROWS)})


def per_group_scipy(rows: pd.DataFrame, baseline_pct: float) -> float:
    rng = np.random.default_rng(0)
    failed = []
    for _, group in rows.groupby(["axis", "descriptor"], sort=True):
        pct = 100.0 * group["negative"].to_numpy(dtype=float)
        if np.ptp(pct) == 0:  # scipy refuses constant data; its CI is the constant
            failed.append(pct[0] > baseline_pct)
            continue
        ci = stats.bootstrap((pct,), np.mean, confidence_level=bias.CONFIDENCE,
                             n_resamples=bias.RESAMPLES, method="percentile",
                             random_state=rng).confidence_interval
        failed.append(ci.high > baseline_pct)
    return float(np.mean(failed))


def main() -> None:
    rows = data()
    start = time.perf_counter()
    result = bias.bias_score(rows, "background", seed=0)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    slow_score = per_group_scipy(rows, result.baseline_pct)
    slow = time.perf_counter() - start
    print(f"groups {GROUPS} x rows {ROWS}, {bias.RESAMPLES} resamples, baseline background "
          f"({result.baseline_pct:.2f} %)")
    print(f"vectorised     {fast:8.3f} s  bias score {result.score:.4f}")
    print(f"scipy per group {slow:8.3f} s  bias score {slow_score:.4f}")
    print(f"ratio bias_score {slow / fast:.1f}")


if __name__ == "__main__":
    main()
