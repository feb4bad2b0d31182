"""Bootstrap intervals with a known answer: coverage over repeated draws, parity with scipy,
paired differences, and the family bootstrap of the correlations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from valueharms import bootstrap
from valueharms.analyze import stats, tables
from valueharms.analyze.metrics import measure
from valueharms.records import Score
from valueharms.values import VALUES, Profile

PROMPTS, SAMPLES = 60, 3


def rtp_draw(system: str, rng: np.random.Generator, shift: float = 0.0) -> list[Score]:
    """Per prompt a latent u ~ U(0, 1); one sample scores u, the others u / 2. So the expected
    maximum toxicity is 0.5 + shift, the toxicity probability 0.5 and the mean toxicity 1/3
    (shift 0): samples are nested in prompts and strongly correlated within them."""
    out = []
    for p in range(PROMPTS):
        u = min(1.0, rng.random() + shift)
        for s in range(SAMPLES):
            out.append(Score(system, "rtp", f"p{p}", s, "tox", "ok", value=u if s == 0 else u / 2))
    return out


def test_intervals_cover_the_known_answer_about_95_percent():
    rng = np.random.default_rng(11)
    draws = 300  # independent "systems", each a fresh draw of the same benchmark
    scores = [s for k in range(draws) for s in rtp_draw(f"draw{k:03d}", rng)]
    table = measure(scores).table
    truth = {"expected_max_toxicity": 0.5, "toxicity_probability": 0.5, "mean_toxicity": 1 / 3}
    for metric, true in truth.items():
        rows = table[table["metric"] == metric]
        assert len(rows) == draws
        covered = ((rows["low"] <= true) & (true <= rows["high"])).mean()
        assert 0.90 <= covered <= 0.985, (metric, covered)
    # Resampling rows instead of prompts would ignore the nesting: the sample mean's interval
    # would be too narrow. Ours is as wide as a prompt-level interval should be.
    width = (table["high"] - table["low"])[table["metric"] == "mean_toxicity"].mean()
    prompt_sd = np.std([(1 + 0.5 * (SAMPLES - 1)) / SAMPLES * u for u in rng.random(100_000)])
    assert width == pytest.approx(2 * 1.96 * prompt_sd / np.sqrt(PROMPTS), rel=0.15)


def test_interval_matches_scipy_percentile_bootstrap_over_prompts():
    scores = rtp_draw("vanilla", np.random.default_rng(5))
    row = measure(scores).table.set_index("metric").loc["expected_max_toxicity"]
    worst = pd.DataFrame([(s.prompt_id, s.value) for s in scores]).groupby(0)[1].max().to_numpy()
    ref = sps.bootstrap((worst,), np.mean, confidence_level=0.95, n_resamples=20_000,
                        method="percentile", rng=1).confidence_interval
    spread = ref.high - ref.low
    assert row["low"] == pytest.approx(ref.low, abs=0.04 * spread)
    assert row["high"] == pytest.approx(ref.high, abs=0.04 * spread)
    assert row["value"] == pytest.approx(worst.mean())


def test_paired_difference_interval_is_narrower_than_unpaired():
    rng = np.random.default_rng(7)
    base = rtp_draw("vanilla", rng)
    # the same prompts, a little more toxic: strongly paired with vanilla
    shifted = [Score("vim:Hed", s.benchmark, s.prompt_id, s.sample, s.scorer, s.status,
                     value=min(1.0, s.value + 0.05)) for s in base]
    found = measure(base + shifted)
    table = tables.comparison_intervals(found.table, found.resampler)
    row = table[(table["system_type"] == "vim")
                & (table["metric"] == "expected_max_toxicity")].iloc[0]
    assert row["difference"] == pytest.approx(0.05, abs=0.01)
    assert 0 < row["difference_low"] <= row["difference"] <= row["difference_high"]
    assert row["difference_high"] - row["difference_low"] < 0.25 * (row["high"] - row["low"])


def test_family_bootstrap_resamples_whole_families():
    rng = np.random.default_rng(0)
    fams, members = 10, 6
    family = np.repeat([f"F{k}" for k in range(fams)], members)
    centre = rng.normal(size=fams)
    x = np.repeat(centre, members) + rng.normal(0, 0.05, fams * members)
    y = 0.3 * x + np.repeat(rng.normal(size=fams), members) + rng.normal(0, 0.05, fams * members)
    low, high = stats.family_bootstrap_r(x, y, family, resamples=500, seed=4)
    # the same resamples written out: draw families, keep all their members, Pearson r
    drawn = bootstrap.unit_weights(fams, 500, np.random.default_rng(4))
    codes = pd.factorize(pd.Series(family))[0]
    rs = []
    for counts in drawn.astype(int):
        pick = np.concatenate([np.flatnonzero(codes == f).repeat(c) for f, c in enumerate(counts)])
        rs.append(np.corrcoef(x[pick], y[pick])[0, 1])
    assert (low, high) == pytest.approx(tuple(np.nanpercentile(rs, [2.5, 97.5])))
    # treating the 60 targets as independent would give a far narrower interval
    naive = sps.bootstrap((x, y), lambda a, b: sps.pearsonr(a, b).statistic, paired=True,
                          vectorized=False, n_resamples=500, method="percentile", rng=4)
    assert high - low > 1.5 * (naive.confidence_interval.high - naive.confidence_interval.low)


def test_family_correlations_on_a_fixture_with_families():
    rng = np.random.default_rng(1)
    profiles, rows = {}, []
    for f in range(9):
        extreme = f"X{f}"
        for k in range(4):
            name = extreme if k == 0 else f"close_{extreme}_{k}"
            meta = {"kind": "extreme"} if k == 0 else {"kind": "ess", "extreme": extreme}
            profiles[name] = Profile(name, tuple(rng.uniform(1, 6, len(VALUES))), meta)
            rows.append({"system": f"vim:{name}", "benchmark": "rtp", "scorer": "tox",
                         "metric": "expected_max_toxicity", "category": "all",
                         "value": 0.1 * profiles[name]["Power"] + rng.normal(0, 0.05), "n": 10})
    metrics = pd.DataFrame(rows)
    table = stats.family_correlations(metrics, profiles)
    assert len(table) == len(VALUES) and (table["families"] == 9).all()
    assert (table["targets"] == 36).all()
    row = table.set_index("value").loc["Power"]
    fam = pd.DataFrame({"f": [n.split("_")[1] if n.startswith("close") else n for n in profiles],
                        "x": [p["Power"] for p in profiles.values()],
                        "y": metrics["value"]}).groupby("f").mean()
    assert row["family_r"] == pytest.approx(sps.pearsonr(fam["x"], fam["y"]).statistic)
    assert row["test"] == f"permutation ({stats.PERMUTATIONS:,} random)"
    assert row["family_q"] <= row["family_p"] * 10
    assert row["r_low"] < sps.pearsonr([p["Power"] for p in profiles.values()],
                                       metrics["value"]).statistic < row["r_high"]
    # without families the table is empty: the targets are the units
    plain = {n: Profile(n, p.scores) for n, p in profiles.items()}
    assert stats.family_correlations(metrics, plain).empty
