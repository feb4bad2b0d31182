"""Analysis tables and statistics on synthetic-but-realistic score files.

``synthetic_scores`` builds the scores a small study would produce (also used by test_report):
value-aligned systems whose harms follow their target's values (Hedonism -> adult content,
Power -> hate), so the correlations have something true to find.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from valueharms import analyze
from valueharms.analyze import stats, tables
from valueharms.analyze.metrics import compute_metrics
from valueharms.records import Score, to_json
from valueharms.values import SHORT, Profile, extreme

HEXPHI = ("adult_content", "child_abuse_content", "economic_harm", "fraud_deception",
          "hate_harass_violence", "illegal_activity", "malware", "physical_harm",
          "political_campaigning", "privacy_violation_activity", "tailored_financial_advice")
BEAVERTAILS = ("animal_abuse", "child_abuse", "controversial_topics,politics",
               "discrimination,stereotype,injustice", "drug_abuse,weapons,banned_substance",
               "financial_crime,property_crime,theft", "hate_speech,offensive_language",
               "misinformation_regarding_ethics,laws_and_safety", "non_violent_unethical_behavior",
               "privacy_violation", "self_harm", "sexually_explicit,adult_content",
               "terrorism,organized_crime", "violence,aiding_and_abetting,incitement")
HOLISTIC = {"race_ethnicity": ("Black", "Latino", "white", "Asian"),
            "age": ("old", "young", "middle-aged"), "religion": ("Muslim", "Jewish", "atheist")}
ALIGNED = ("Hed", "Pow", "Uni", "Ach", "SD", "Tra", "Sec", "Ben", "Con", "Sti")  # vim: n >= 8
SYSTEMS = ("vanilla", "benign:grammar", *(f"vim:{t}" for t in ALIGNED),
           *(f"prompt:{t}" for t in ALIGNED[:4]),
           "vim:Hed+safety", "vim:Hed+value:Hedonism", "vim:Hed+dual:Hedonism",
           "vim:Pow+safety", "vim:Pow+value:Power", "vim:Pow+dual:Power", "vanilla+safety")
SHRINK = {"none": 1.0, "safety": 0.7, "value": 0.55, "dual": 0.5}


def _risk(system: str) -> tuple[float, dict[str, float]]:
    """A system's base harm and its value weights (1 for the extreme's value, else 0)."""
    key = tables.parse_system(system)
    weights = dict.fromkeys(("Hedonism", "Power"), 0.0)
    if key.target:
        weights = {v: float(v == SHORT[key.target]) for v in weights}
    base = {"vanilla": 0.3, "benign": 0.25, "prompt": 0.35, "vim": 0.45}[key.kind]
    return base * SHRINK[key.strategy], {v: w * SHRINK[key.strategy] for v, w in weights.items()}


def synthetic_scores(seed: int = 0) -> list[Score]:
    rng = np.random.default_rng(seed)
    out: list[Score] = []
    for system in SYSTEMS:
        base, w = _risk(system)
        for p in range(24):  # RTP: 24 prompts x 3 samples, a failure now and then
            for s in range(3):
                status = "failed" if rng.random() < 0.03 else "ok"
                tox = float(np.clip(rng.beta(2, 6) * base * 2.2, 0, 1))
                out.append(Score(system, "rtp", f"rtp-{p}", s, "offline-profanity", status,
                                 value=tox if status == "ok" else None))
        for axis, descriptors in HOLISTIC.items():
            for d in descriptors:
                for i in range(12):
                    neg = rng.random() < base * (0.5 if d != "Muslim" else 1.2)
                    label = "negative" if neg else str(rng.choice(["neutral", "positive", "other"]))
                    out.append(Score(system, "holisticbiasr", f"{d}-{i}", 0, "regard:offline-vader",
                                     "ok", label=label, category=axis,
                                     meta={"axis": axis, "bucket": "none", "descriptor": d,
                                           "noun_phrase": f"a {d} person"}))
        for cat in HEXPHI:
            boost = 2.5 * w["Hedonism"] if cat == "adult_content" else \
                2.5 * w["Power"] if cat == "hate_harass_violence" else 0.0
            for i in range(4):
                harm = int(np.clip(round(1 + 4 * base + boost + rng.normal(0, 0.8)), 1, 5))
                status = "unparsed" if rng.random() < 0.02 else "ok"
                out.append(Score(system, "hexphi", f"{cat}-{i}", 0, "judge-hexphi:local-smollm2",
                                 status, value=float(harm) if status == "ok" else None,
                                 raw="maybe" if status != "ok" else f"score: {harm}", category=cat))
        for cat in BEAVERTAILS:
            boost = 0.5 * w["Hedonism"] if cat.startswith("sexually") else \
                0.5 * w["Power"] if cat.startswith("discrimination") else 0.0
            for i in range(3):
                flagged = rng.random() < min(0.95, base + boost)
                out.append(Score(system, "beavertails", f"{cat}-{i}", 0, "judge-beavertails:refusal",
                                 "ok", value=float(flagged), label="flagged" if flagged else "unflagged",
                                 category=cat))
        for i in range(8):
            harm = int(np.clip(round(1 + 4 * base + rng.normal(0, 1)), 1, 5))
            out.append(Score(system, "advbench", f"adv-{i}", 0, "judge-hexphi:local-smollm2", "ok",
                             value=float(harm)))
    return out


def write_score_files(root: Path, scores: list[Score]) -> None:
    """One file per benchmark under a study-like tree, with generations beside them."""
    for bench in {s.benchmark for s in scores}:
        folder = root / "score" / bench
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "scores.jsonl").write_text("".join(
            json.dumps(to_json(s)) + "\n" for s in scores if s.benchmark == bench))
        gen = root / "generate" / bench / "generations.jsonl"
        gen.parent.mkdir(parents=True, exist_ok=True)
        gen.write_text(json.dumps({"system": "vanilla", "benchmark": bench, "prompt_id": "1",
                                   "sample": 0, "text": "hello"}) + "\n")


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return compute_metrics(synthetic_scores(), "background", resamples=999)


def test_parse_system_keys():
    key = tables.parse_system("vim:Hed+value:Hedonism")
    assert (key.base, key.kind, key.target, key.mitigation, key.strategy, key.system_type) == \
        ("vim:Hed", "vim", "Hed", "value:Hedonism", "value", "vim")
    key = tables.parse_system("benign:grammar+safety")
    assert (key.dataset, key.strategy, key.system_type) == ("grammar", "safety", "benign:grammar")
    assert tables.parse_system("vanilla").strategy == "none"


def test_comparison_table_averages_each_type_and_names_scorers(metrics):
    table = tables.comparison_table(metrics)
    assert table["system_type"].tolist() == ["vanilla", "benign:grammar", "prompt", "vim"]
    assert table.set_index("system_type")["systems"].to_dict() == \
        {"vanilla": 1, "benign:grammar": 1, "prompt": 4, "vim": len(ALIGNED)}
    emt = "rtp / expected_max_toxicity [offline-profanity]"
    assert list(table.columns[2:5]) == [emt, "rtp / toxicity_probability [offline-profanity]",
                                        "holisticbiasr / negative_regard_rate [regard:offline-vader]"]
    vim = metrics[(metrics["metric"] == "expected_max_toxicity") & metrics["system"].isin(
        [f"vim:{t}" for t in ALIGNED])]["value"].mean()
    assert table.set_index("system_type").loc["vim", emt] == pytest.approx(vim)
    assert all("[" in c for c in table.columns[2:])


def test_category_tables_and_system_table(metrics):
    cats = tables.category_tables(metrics)
    hex_table = cats["hexphi / mean_harm_score [judge-hexphi:local-smollm2]"]
    assert set(hex_table["category"]) == set(HEXPHI)
    assert "beavertails / flagged_rate [judge-beavertails:refusal]" in cats
    wide = tables.system_table(metrics)
    assert len(wide) == len(SYSTEMS) and "mitigation" in wide.columns


def test_mitigation_table_change_is_paired_with_no_mitigation(metrics):
    table = tables.mitigation_table(metrics)
    sel = table[(table["benchmark"] == "hexphi") & (table["metric"] == "mean_harm_score")
                & (table["category"] == "all") & (table["system_type"] == "vim")]
    assert sel["strategy"].tolist() == ["none", "safety", "value", "dual"]
    assert sel.set_index("strategy").loc["none", "change"] == 0
    assert (sel.set_index("strategy").loc[["value", "dual"], "change"] < 0).all()
    assert sel["systems"].tolist() == [2, 2, 2, 2]
    pick = metrics.set_index(["system", "benchmark", "metric", "category"])["value"]
    expected = np.mean([pick[(f"vim:{t}+safety", "hexphi", "mean_harm_score", "all")]
                        - pick[(f"vim:{t}", "hexphi", "mean_harm_score", "all")] for t in ("Hed", "Pow")])
    assert sel.set_index("strategy").loc["safety", "change"] == pytest.approx(expected)


@pytest.mark.slow
def test_correlations_match_scipy_and_find_the_planted_pairs(metrics):
    profiles = {t: Profile(t, extreme((SHORT[t],))) for t in ALIGNED}
    corr = stats.correlations(metrics, profiles)
    vim = corr[corr["method"] == "vim"]
    assert len(vim) == 10 * vim[["benchmark", "category"]].drop_duplicates().shape[0]
    row = vim[(vim["value"] == "Hedonism") & (vim["benchmark"] == "hexphi")
              & (vim["category"] == "adult_content")].iloc[0]
    harm = metrics.set_index(["system", "benchmark", "metric", "category"])["value"]
    order = sorted(ALIGNED)  # the table's order of targets, which the random permutations follow
    y = [harm[(f"vim:{t}", "hexphi", "mean_harm_score", "adult_content")] for t in order]
    x = [profiles[t]["Hedonism"] for t in order]
    expected = sps.pearsonr(x, y)
    assert row["pearson_r"] == pytest.approx(expected.statistic)
    # 10 systems: a permutation p-value (10! orderings, so PERMUTATIONS random ones), as scipy's
    perm = sps.permutation_test((x,), lambda a: sps.pearsonr(a, y).statistic,
                                permutation_type="pairings", n_resamples=stats.PERMUTATIONS, rng=0)
    assert row["pearson_p"] == pytest.approx(perm.pvalue)
    assert row["test"] == f"permutation ({stats.PERMUTATIONS:,} random)"
    assert row["assumes"] == stats.INDEPENDENT
    assert row["spearman_rho"] == pytest.approx(sps.spearmanr(x, y).statistic)
    # one target of ten is high on Hedonism: r is large, but 1 in 10 orderings puts that
    # target anywhere, so the permutation p-value is honest at about 0.2
    assert row["pearson_r"] > 0.8 and row["n"] == len(ALIGNED) and 0.1 < row["pearson_p"] < 0.3
    finite = vim["pearson_p"].notna()
    q = sps.false_discovery_control(vim.loc[finite, "pearson_p"].to_numpy())
    assert np.allclose(vim.loc[finite, "pearson_q"].to_numpy(), q)
    # 4 prompting systems: r is shown, but no p-value and never significant
    prompt = corr[corr["method"] == "prompt"]
    assert (prompt["n"] == 4).all() and (prompt["test"].isin([stats.TOO_FEW, "undefined"])).all()
    assert prompt[["pearson_p", "pearson_q", "spearman_p", "spearman_q"]].isna().all().all()
    assert prompt["pearson_r"].notna().any()


@pytest.mark.slow
def test_small_samples_get_exact_permutation_p_values():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=8), rng.normal(size=8)
    y += x
    found = stats.correlation_test(x, y)
    # one sample permuted against the other: its n! orderings are all the pairings
    exact = sps.permutation_test((x,), lambda a: sps.pearsonr(a, y).statistic,
                                 permutation_type="pairings", n_resamples=np.inf)
    assert found["test"] == "exact permutation"
    assert found["pearson_p"] == pytest.approx(exact.pvalue)
    rank = sps.permutation_test((x,), lambda a: sps.spearmanr(a, y).statistic,
                                permutation_type="pairings", n_resamples=np.inf)
    assert found["spearman_p"] == pytest.approx(rank.pvalue)
    assert stats.correlation_test(x[:7], y[:7])["test"] == stats.TOO_FEW
    assert np.isnan(stats.correlation_test(x[:7], y[:7])["pearson_p"])
    big = stats.correlation_test(np.arange(40.0), np.arange(40.0) ** 1.5)
    assert big["test"] == "asymptotic"
    diff = rng.normal(0.3, 1, size=12)
    flip = sps.permutation_test((diff,), lambda d, axis: d.mean(axis=axis), vectorized=True,
                                permutation_type="samples", n_resamples=np.inf)
    found = stats.difference_test(diff)
    assert found["p"] == pytest.approx(flip.pvalue) and found["test"] == "sign-flip exact permutation"


def test_aligned_vs_vanilla(metrics):
    table = stats.aligned_vs_vanilla(metrics)
    row = table[(table["method"] == "vim") & (table["benchmark"] == "rtp")
                & (table["metric"] == "expected_max_toxicity") & (table["category"] == "all")].iloc[0]
    values = metrics[(metrics["metric"] == "expected_max_toxicity") & metrics["system"].isin(
        [f"vim:{t}" for t in ALIGNED])]["value"].to_numpy()
    vanilla = metrics[(metrics["metric"] == "expected_max_toxicity")
                      & (metrics["system"] == "vanilla")]["value"].iloc[0]
    assert row["systems"] == len(ALIGNED) and row["vanilla"] == pytest.approx(vanilla)
    flip = sps.permutation_test((values - vanilla,), lambda d, axis: d.mean(axis=axis),
                                vectorized=True, permutation_type="samples", n_resamples=np.inf)
    assert row["p"] == pytest.approx(flip.pvalue) and row["test"] == "sign-flip exact permutation"
    assert row["difference"] > 0 and row["higher"] == len(ALIGNED)
    prompt = table[table["method"] == "prompt"]
    assert (prompt["test"] == stats.TOO_FEW).all() and prompt[["p", "q"]].isna().all().all()


def test_analyse_writes_csv_and_parquet(tmp_path, metrics):
    result = analyze.analyse(metrics, extra_profiles=[Profile(t, extreme((SHORT[t],))) for t in ALIGNED])
    assert result.missing_targets == []
    written = {p.name for p in analyze.write(result, tmp_path)}
    assert {"metrics.csv", "metrics.parquet", "systems.csv", "systems.parquet", "comparison.csv",
            "correlations.csv", "mitigation.csv", "versus_vanilla.csv"} <= written
    back = pd.read_parquet(tmp_path / "systems.parquet")
    assert len(back) == len(SYSTEMS)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
