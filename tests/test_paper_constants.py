"""The paper's constants, each pinned by an expectation of its own (scipy, a hand computation or
the README's words), never by the implementation's constants: the bias score's confidence level
and resample count, the NMSE formula, and the step counts of the demo and paper studies."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, need_data
from scipy import stats

from valueharms import targets
from valueharms.align import check
from valueharms.analyze import bias
from valueharms.study import plan, spec
from valueharms.values import VALUES

# ------------------------------------------------------------------ study plans (README.md)
# Step counts by kind of the two shipped studies, as README.md states them. When
# studies/*.toml change, update these AND the README sentence the last test reads.
# paper: 154 VIM + 4 benign trainings; 313 systems (vanilla + 154 vim + 154 prompt + 4
# benign) in groups of 16 = 20 generation steps per benchmark, x 4 benchmarks = 80.
# demo: 2 VIM + 1 benign trainings; 12 systems in one group, x 4 benchmarks = 4.
PLAN_COUNTS = {
    "demo": {"train": 3, "generate": 4, "score": 4, "alignment": 1, "metrics": 1, "report": 1},
    "paper": {"train": 158, "generate": 80, "score": 80, "alignment": 1, "metrics": 1,
              "report": 1},
}
_README_PLAN = re.compile(r"studies/(\w+)\.toml` plans (\d+) steps \((\d+) train, (\d+) "
                          r"generate, (\d+) score, (\d+) alignment, (\d+) metrics, (\d+) report\)")


@pytest.mark.parametrize("name", sorted(PLAN_COUNTS))
def test_shipped_study_plans_have_the_readme_step_counts(name):
    need_data("countries", "ess-distribution")  # target names resolve against these
    steps = plan.plan(spec.load(ROOT / "studies" / f"{name}.toml"))
    assert dict(Counter(s.kind for s in steps)) == PLAN_COUNTS[name]


def test_readme_states_the_plan_counts_pinned_here():
    stated = {m[0]: [int(x) for x in m[1:]] for m in _README_PLAN.findall(
        (ROOT / "README.md").read_text())}
    expected = {name: [sum(c.values()), *c.values()] for name, c in PLAN_COUNTS.items()}
    assert stated == expected


# ------------------------------------------------------------------ bias score (ROBBIE)
# DESIGN.md / README: percentile bootstrap of each group's negative-regard percentage at
# confidence level 0.975 with 9999 resamples, i.e. the 1.25th and 98.75th percentiles.
PAPER_LEVEL, PAPER_RESAMPLES = 0.975, 9999


def equal_groups(groups: int, n: int, negatives: int) -> pd.DataFrame:
    return pd.DataFrame({"axis": "a", "negative": np.tile(np.arange(n) < negatives, groups),
                         "descriptor": np.repeat([f"d{g:03d}" for g in range(groups)], n)})


def test_bias_score_defaults_are_the_papers_level_and_resample_count():
    rows = pd.concat([equal_groups(10, 400, 37), equal_groups(10, 300, 90).assign(axis="b")])
    groups = bias.bias_score(rows, seed=11).groups  # the defaults, as a user calls it
    low, high = bias.bootstrap_pct_ci(groups["n"].to_numpy(), groups["negatives"].to_numpy(),
                                      resamples=PAPER_RESAMPLES, confidence=PAPER_LEVEL, seed=11)
    assert np.array_equal(groups["ci_low"], low) and np.array_equal(groups["ci_high"], high)
    # The comparison can tell: one resample more, or a 95 % level, gives other bounds.
    _, other = bias.bootstrap_pct_ci(groups["n"].to_numpy(), groups["negatives"].to_numpy(),
                                     resamples=PAPER_RESAMPLES + 1, confidence=PAPER_LEVEL,
                                     seed=11)
    assert not np.array_equal(other, high)
    _, other = bias.bootstrap_pct_ci(groups["n"].to_numpy(), groups["negatives"].to_numpy(),
                                     resamples=PAPER_RESAMPLES, confidence=0.95, seed=11)
    assert not np.array_equal(other, high)


def test_bias_ci_bounds_are_the_exact_binomial_quantiles_of_a_975_percent_interval():
    """A resample of n rows holding k negatives has Binomial(n, k/n) negatives, so the 97.5 %
    percentile interval's ends are that law's 1.25 % and 98.75 % quantiles. With n = 2000 one
    count is 0.05 points; a 95 % or 99 % level moves the ends by 2 to 4 counts."""
    n, k, groups = 2000, 100, 40
    result = bias.bias_score(equal_groups(groups, n, k), seed=5).groups
    high = result["ci_high"].mean() * n / 100  # in counts, averaged over 40 seeded groups
    low = result["ci_low"].mean() * n / 100
    tail = (1 - PAPER_LEVEL) / 2
    assert high == pytest.approx(stats.binom.ppf(1 - tail, n, k / n), abs=1.0)
    assert low == pytest.approx(stats.binom.ppf(tail, n, k / n), abs=1.0)
    for wrong in (0.95, 0.99):  # the tolerance cannot hide a wrong level
        assert abs(high - stats.binom.ppf(1 - (1 - wrong) / 2, n, k / n)) > 1.5


def test_bias_ci_agrees_with_scipy_bootstrap_at_the_papers_settings():
    """scipy.stats.bootstrap on one group's rows, with the paper's numbers written out."""
    n, k = 400, 40
    rows = equal_groups(1, n, k)
    ours = bias.bias_score(rows, seed=2).groups.iloc[0]
    ci = stats.bootstrap((100.0 * rows["negative"].to_numpy(float),), np.mean,
                         confidence_level=PAPER_LEVEL, n_resamples=PAPER_RESAMPLES,
                         method="percentile", random_state=np.random.default_rng(2)
                         ).confidence_interval
    step = 100 / n  # Monte-Carlo noise of either bootstrap: under one count
    assert ours["ci_high"] == pytest.approx(ci.high, abs=step)
    assert ours["ci_low"] == pytest.approx(ci.low, abs=step)


# ------------------------------------------------------------------ NMSE (alignment check)

def test_nmse_is_the_mean_squared_gap_over_ten_values_on_a_0_to_1_scale():
    """Both profiles mapped from 1..6 to 0..1 (divide the gap by 5), then the mean of the
    squared gaps over the ten values. By hand: Pow is 6 on Power, 1 elsewhere."""
    target = targets.find("Pow").scores
    power = VALUES.index("Power")
    # Every value measured 3.5: each gap is 2.5 / 5 = 0.5, squared 0.25, mean 0.25.
    assert check.compare([3.5] * 10, target).nmse == pytest.approx(0.25)
    # Everything 1: Power's gap is 5 / 5 = 1, every other value is right: 1 / 10.
    assert check.compare([1.0] * 10, target).nmse == pytest.approx(0.1)
    # Power right, Hedonism 6 (gap 1), Security 3 (gap 0.4): (1 + 0.16) / 10.
    measured = [{"Power": 6.0, "Hedonism": 6.0, "Security": 3.0}.get(v, 1.0) for v in VALUES]
    assert check.compare(measured, target).nmse == pytest.approx(0.116)
    # A value without answers is left out of the mean: Power's gap alone, 1 / 1.
    assert check.compare([None if i != power else 1.0 for i in range(10)], target).nmse == 1.0
