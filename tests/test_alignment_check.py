"""The alignment check: instruments (PVQ-40, leak-free arguments, a file), three readings,
shape and level metrics, and the CLI writing its three files."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from valueharms import bootstrap, targets
from valueharms.align import check
from valueharms.align.vim_data import build_vim
from valueharms.generate.hf import HFBackend
from valueharms.values import VALUES, Profile

TARGET = targets.find("Pow")  # Power 6, every other value 1


def answers(scores: dict[str, list[float | None]]) -> list[check.Answer]:
    """Answers with the given scores, one item per score, for ``measure``."""
    out, n = [], 0
    for value, values in scores.items():
        for s in values:
            n += 1
            out.append(check.Answer(check.Item(n, value, f"q{n}"), None, None, s))
    return out


# ----------------------------------------------------------------------------- instruments

def test_the_pvq40_key_has_items_1_to_40_once_and_3_to_6_items_per_value(data_dir):
    items = check.instrument_items("pvq40", TARGET, str(data_dir))
    assert sorted(i.number for i in items) == list(range(1, 41))
    per_value = {v: sum(i.value == v for i in items) for v in VALUES}
    assert all(3 <= n <= 6 for n in per_value.values()), per_value
    assert per_value["Universalism"] == 6 and per_value["Power"] == 3  # the published key
    # asked with the stage-2 wording and scale
    assert "How much is this person like you?" in items[0].question
    assert "6 = Very much like me" in items[0].question


@pytest.mark.parametrize("train_limit", [None, 64])
def test_argument_items_leave_out_the_targets_stage1_train_and_valid_arguments(data_dir,
                                                                               train_limit):
    target = targets.find("close_Ben_9", str(data_dir))
    items = check.instrument_items("arguments", target, str(data_dir), train_limit=train_limit)
    for limit in {None, train_limit}:
        data = build_vim(target, data_dir=str(data_dir), limit=limit)
        trained = {ex.meta["argument_id"] for split in ("train", "valid")
                   for ex in data.split(1, split)}
        assert not trained & {i.number for i in items}
    # one item per (argument, annotated value), as stage 2 asks
    test = {a.id: a for a in check.sources.read_arguments(
        check.sources.locate("arguments-test", str(data_dir)))}
    for number in {i.number for i in items}:
        annotated = {VALUES[v] for v in np.flatnonzero(test[number].labels)}
        assert {i.value for i in items if i.number == number} == annotated
    assert len(items) == len({i.key for i in items}) > 50


def test_a_questionnaire_file_is_read_like_pvq40(tmp_path):
    path = tmp_path / "q.csv"
    rows = [(n + 1, v, f"Portrait about {v}.") for n, v in enumerate(VALUES)]
    path.write_text("item,value,text\n" + "".join(f'{n},{v},"{t}"\n' for n, v, t in rows))
    items = check.instrument_items(str(path), TARGET)
    assert [i.value for i in items] == list(VALUES)
    assert '"Portrait about Power."' in items[4].question


# ----------------------------------------------------------------------------- metrics

def test_metrics_against_a_hand_computation():
    measured = [2.0, 5.0, 3.0, 1.0, 1.0, 4.0, 4.0, 3.0, 2.0, 6.0]
    target = [1.0, 6.0, 3.0, 2.0, 1.0, 3.0, 5.0, 2.0, 2.0, 5.0]
    m = check.compare(measured, target)
    diffs = [x - t for x, t in zip(measured, target)]
    assert m.nmse == pytest.approx(sum((d / 5) ** 2 for d in diffs) / 10)
    # centred: measured mean 3.1, target mean 3.0 -> each diff shifts by 0.1
    assert m.nmse_centered == pytest.approx(sum(((d - 0.1) / 5) ** 2 for d in diffs) / 10)
    mx, tx = np.mean(measured), np.mean(target)
    cov = sum((x - mx) * (t - tx) for x, t in zip(measured, target))
    r = cov / np.sqrt(sum((x - mx) ** 2 for x in measured) * sum((t - tx) ** 2 for t in target))
    assert m.pearson_r == pytest.approx(r)
    ranks = lambda xs: [sum(y < x for y in xs) + (sum(y == x for y in xs) + 1) / 2 for x in xs]  # noqa: E731
    rm, rt = ranks(measured), ranks(target)
    assert m.spearman_rho == pytest.approx(np.corrcoef(rm, rt)[0, 1])


def test_a_constant_answer_has_no_r_and_an_empty_cell_never_zero():
    row = check.measure("s", TARGET, answers({v: [3.0] for v in VALUES}), "pvq40", "likelihood")
    m = row.metrics
    assert m.pearson_r is None and m.spearman_rho is None
    assert m.nmse == pytest.approx((((3 - 6) / 5) ** 2 + 9 * ((3 - 1) / 5) ** 2) / 10)
    assert m.nmse_centered == pytest.approx((((0 - 4.5) / 5) ** 2 + 9 * ((0 + 0.5) / 5) ** 2) / 10)
    cells = next(csv.DictReader(check.table_csv([row]).splitlines()))
    assert cells["pearson_r"] == "" and cells["spearman_rho"] == ""


def test_answers_average_per_value_and_unparsed_ones_are_counted_not_guessed():
    row = check.measure("s", TARGET, answers({"Power": [6.0, 4.0, None], "Security": [2.0]}),
                        "pvq40", "generate")
    assert row.measured[VALUES.index("Power")] == pytest.approx(5.0)
    assert row.counts[VALUES.index("Power")] == 2 and row.n_unparsed == 1 and row.n_items == 4
    assert row.measured[VALUES.index("Hedonism")] is None and "Hedonism" in row.missing
    assert row.nmse == pytest.approx((((5 - 6) / 5) ** 2 + ((2 - 1) / 5) ** 2) / 2)
    assert row.metrics.pearson_r is None  # two values are too few for a shape


# ----------------------------------------------------------------------------- intervals

@pytest.mark.slow
def test_intervals_cover_the_known_profile_metrics_about_95_percent():
    """A questionnaire of 50 items per value whose answers scatter (sd 1) around known means:
    over repeated draws each metric's interval holds the metrics of the known means."""
    target = Profile("t", (5.0, 4.5, 4.0, 3.5, 3.0, 2.5, 2.0, 3.2, 4.2, 5.2))
    true = np.array([4.1, 3.0, 3.6, 4.4, 2.1, 3.3, 2.6, 3.9, 2.8, 4.7])
    truth = check.compare(list(true), target.scores)
    rng = np.random.default_rng(1)
    draws, covered = 300, dict.fromkeys(check.METRIC_FIELDS, 0)
    for _ in range(draws):
        row = check.measure("s", target, answers({v: list(mu + rng.normal(0, 1.0, 50))
                                                  for v, mu in zip(VALUES, true)}),
                            "pvq40", "expected")
        for name in covered:
            low, high = row.bounds[name]
            covered[name] += low <= getattr(truth, name) <= high
    # NMSE is biased upwards by the answers' noise (sd^2 / items per value), which a
    # percentile interval does not remove: with 3-6 items per value it covers less than this.
    assert all(0.90 <= n / draws <= 0.99 for n in covered.values()), covered


def test_arguments_are_resampled_whole_and_questionnaire_items_within_their_value():
    # argument 1 measures two values with one answer; resampled, its answers stay together
    items = answers({"Power": [6.0, 2.0, 4.0], "Security": [1.0, 3.0]})
    shared = [check.Answer(check.Item(1, "Security", "q1"), None, None, 6.0)]
    profiles = check.resampled_profiles(items + shared, within_values=False, resamples=200)
    drawn = bootstrap.unit_weights(5, 200, np.random.default_rng(0))  # units 1..5 in order
    with np.errstate(invalid="ignore"):  # a resample without a value's units: NaN, as ours
        power = (drawn[:, :3] @ [6.0, 2.0, 4.0]) / drawn[:, :3].sum(1)
        security = (drawn[:, 3:] @ [1.0, 3.0] + drawn[:, 0] * 6.0) / (drawn[:, 3:].sum(1) + drawn[:, 0])
    assert np.allclose(profiles[:, VALUES.index("Power")], power, equal_nan=True)
    assert np.allclose(profiles[:, VALUES.index("Security")], security, equal_nan=True)
    # within values: every resample keeps 3 Power and 2 Security items, so never a gap
    within = check.resampled_profiles(items, within_values=True, resamples=200)
    assert not np.isnan(within[:, [VALUES.index("Power"), VALUES.index("Security")]]).any()


def test_a_constant_answer_has_an_empty_interval_never_zero():
    row = check.measure("s", TARGET, answers({v: [3.0, 3.0, 3.0] for v in VALUES}), "pvq40",
                        "expected")
    assert row.bounds["pearson_r"] == (None, None) == row.bounds["spearman_rho"]
    assert row.bounds["nmse"] == (pytest.approx(row.nmse), pytest.approx(row.nmse))
    cells = next(csv.DictReader(check.table_csv([row]).splitlines()))
    assert [cells[f"pearson_r{end}"] for end in ("", "_low", "_high")] == ["", "", ""]
    assert float(cells["nmse_low"]) <= float(cells["nmse"]) <= float(cells["nmse_high"])
    assert "pearson_r n/a" in check.describe(row) and "nmse 0." in check.describe(row)


# ----------------------------------------------------------------------------- readings

@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir):
    return HFBackend(str(tiny_model_dir), device="cpu", batch_size=4)


@pytest.mark.parametrize("method", check.METHODS)
def test_each_reading_on_a_tiny_model(tiny_backend, data_dir, method):
    items = check.instrument_items("pvq40", TARGET, str(data_dir), limit=12)
    got = check.ask(tiny_backend, check.Subject("vanilla"), items, method)
    assert [a.item for a in got] == items
    if method == "generate":  # a random model's replies: parsed or counted, never guessed
        assert all(a.text is not None and a.probs is None for a in got)
        assert all(a.score == check.parse_survey_answer(a.text) or
                   (a.score is None and check.parse_survey_answer(a.text) is None) for a in got)
        return
    logprobs = tiny_backend.choice_logprobs(
        [check.render_prompt(i.question, tiny_backend.tokenizer) for i in items],
        list(check.CHOICES))
    for answer, lp in zip(got, logprobs):
        p = np.exp(lp) / np.exp(lp).sum()
        assert answer.probs == pytest.approx(p, abs=1e-5)
        want = 1 + int(np.argmax(p)) if method == "likelihood" else float(p @ np.arange(1, 7))
        assert answer.score == pytest.approx(want, abs=1e-5)


def test_choice_logprobs_do_not_depend_on_the_batch(tiny_model_dir, tiny_backend, data_dir):
    items = check.instrument_items("pvq40", TARGET, str(data_dir), limit=5)
    prompts = [check.render_prompt(i.question, tiny_backend.tokenizer) for i in items]
    one = HFBackend(str(tiny_model_dir), device="cpu", batch_size=1)
    assert np.allclose(tiny_backend.choice_logprobs(prompts, list(check.CHOICES)),
                       one.choice_logprobs(prompts, list(check.CHOICES)), atol=1e-4)


def test_prompting_puts_the_persona_before_the_survey_item():
    plain, persona = check.survey_text("Q?"), check.survey_text("Q?", TARGET)
    assert persona.endswith(plain) and "Power" in persona[: -len(plain)]


# ----------------------------------------------------------------------------- CLI

@pytest.mark.slow
def test_cli_pvq40_likelihood_on_the_embedded_model_writes_three_files(cli, tmp_path):
    out = tmp_path / "out"
    result = cli("evaluate", "alignment", "--instrument", "pvq40", "--target",
                 "close_Ben_9,close_Pow", "--method", "likelihood", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(lines) == 40 and {x["system"] for x in lines} == {"vanilla"}
    assert sorted(x["item"] for x in lines) == list(range(1, 41))
    assert all(x["score"] in range(1, 7) and sum(x["probs"]) == pytest.approx(1, abs=1e-4)
               for x in lines)
    table = list(csv.DictReader((out / "alignment.csv").open()))
    assert [(r["system"], r["target"]) for r in table] == [("vanilla", "close_Ben_9"),
                                                           ("vanilla", "close_Pow")]
    assert all(r["n_items"] == "40" and r["n_unparsed"] == "0" and r["instrument"] == "pvq40"
               for r in table)
    # the row's measured means are the answers' means per value
    for value in VALUES:
        mine = [x["score"] for x in lines if x["value"] == value]
        assert float(table[0][value]) == pytest.approx(sum(mine) / len(mine), abs=1e-4)
    measured = targets.read_profiles(out / "measured_profiles.csv")
    assert [p.name for p in measured] == ["vanilla"]
    assert "nmse" in result.stdout and "pearson_r" in result.stdout
    assert all(float(r["nmse_low"]) <= float(r["nmse"]) <= float(r["nmse_high"]) for r in table)


@pytest.mark.slow
@pytest.mark.needs_data("arguments-test")
def test_cli_arguments_instrument_with_prompting_on_a_tiny_model(cli, tiny_model_dir, tmp_path):
    result = cli("evaluate", "alignment", "--model", str(tiny_model_dir), "--prompting", "Pow",
                 "--instrument", "arguments", "--method", "expected", "--limit", "5",
                 "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in (tmp_path / "out" / "answers.jsonl").read_text().splitlines()]
    assert len({x["item"] for x in lines}) == 5 and all(x["system"] == "prompt:Pow" for x in lines)
    table = list(csv.DictReader((tmp_path / "out" / "alignment.csv").open()))
    assert int(table[0]["n_items"]) == len(lines) and table[0]["instrument"] == "arguments"
    low, value, high = (float(table[0][f"nmse{end}"]) for end in ("_low", "", "_high"))
    assert low <= value <= high
