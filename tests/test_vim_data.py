"""VIM training data: the min rule, split sizes, seeds, ids, stage-2 columns by name,
stochastic rounding, the five targets without positives, the survey parser and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from valueharms import sources, targets
from valueharms.align import vim_data as vd
from valueharms.errors import InputError
from valueharms.values import PVQ_SCALE, VALUES, Profile

NO_POSITIVES = ("close_Ach", "close_SD_6", "close_Uni_6", "close_Self-Transcendence_3",
                "close_Self-Transcendence_6")
STAGE2_FILES = ("argument_generation/value_split/train.csv",
                "argument_generation/value_split/valid.csv", "argument_generation/test.csv")


def profile(name: str = "t", **scores: float) -> Profile:
    return Profile.from_mapping(name, {v: scores.get(v, 1.0) for v in VALUES})


@pytest.fixture(scope="module")
def arguments(data_dir) -> dict[int, sources.Argument]:
    return {a.id: a for a in sources.read_arguments(data_dir / "valueEval_10.csv")}


@pytest.fixture(scope="module")
def mini_dir(data_dir, tmp_path_factory) -> Path:
    """Slices of the real files (raw lines): every 50th stage-1 row, so ids are not positions."""
    out = tmp_path_factory.mktemp("mini-data")
    lines = (data_dir / "valueEval_10.csv").read_text(encoding="utf-8").splitlines(True)
    (out / "valueEval_10.csv").write_text(lines[0] + "".join(lines[1::50]), encoding="utf-8")
    for name in STAGE2_FILES:
        lines = (data_dir / name).read_text(encoding="utf-8").splitlines(True)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("".join(lines[:41]), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- stage 1 rule

def test_positive_mask_by_hand():
    # arguments: {Security}, {Security, Achievement}, {Hedonism}, {Achievement, Power, Hedonism}
    labels = np.zeros((4, 10), dtype=int)
    for a, values in enumerate([["Security"], ["Security", "Achievement"], ["Hedonism"],
                                ["Achievement", "Power", "Hedonism"]]):
        labels[a, [VALUES.index(v) for v in values]] = 1
    p = np.array([profile(Security=3, Achievement=2.9, Hedonism=6, Power=4).scores,
                  profile().scores])
    assert vd.positive_mask(p, labels).tolist() == [[True, False, True, False],
                                                    [False, False, False, False]]
    assert vd.positive_mask(p, labels, strategy="mean")[0].tolist() == [True, False, True, True]
    assert vd.positive_mask(p, labels, strategy="max")[0].tolist() == [True, True, True, True]
    assert vd.positive_mask(p, labels, threshold=4.5)[0].tolist() == [False, False, True, False]
    np.testing.assert_allclose(vd.argument_scores(p, labels, "mean")[0],
                               [3, 2.95, 6, (2.9 + 4 + 6) / 3])
    no_value = np.zeros((1, 10), dtype=int)  # no annotated value: no score, never positive
    for strategy in vd.STRATEGIES:
        assert not vd.positive_mask(p, no_value, 1, strategy).any()


def test_min_rule_on_real_arguments(arguments):
    # 0: Security; 81: Security + Achievement; 4230: Hedonism
    table = vd.build_stage1_many([profile(Security=3, Achievement=2.9, Hedonism=5)],
                                 list(arguments.values()))[0]
    positive = dict(zip(table.texts.ids.tolist(), table.positive.tolist()))
    assert arguments[81].values == ("Achievement", "Security")
    assert (positive[0], positive[81], positive[4230]) == (True, False, True)
    hed = vd.build_stage1_many([targets.find("Hed")], list(arguments.values()))[0]
    assert set(hed.texts.ids[hed.positive].tolist()) == {4230, 6378, 6670}


def test_positive_sets_match_a_plain_loop(arguments, data_dir):
    """Every profile of extremes + reverse and the paper's Pow/Tra families, all strategies."""
    paper = targets.load_set("paper", str(data_dir))
    chosen = targets.extremes() + targets.reverses() + [
        p for p in paper if p.name.startswith(("close_Pow", "close_Tra", "close_Hed_1"))]
    args = list(arguments.values())
    combine = {"min": min, "max": max, "mean": lambda s: sum(s) / len(s)}
    for strategy, threshold in (("min", 3), ("mean", 3.5), ("max", 5)):
        tables = vd.build_stage1_many(chosen, args, threshold=threshold, strategy=strategy)
        for p, table in zip(chosen, tables):
            scores = p.as_dict()
            expected = {a.id for a in args
                        if combine[strategy]([scores[v] for v in a.values]) >= threshold}
            assert set(table.texts.ids[table.positive].tolist()) == expected, (p.name, strategy)


@pytest.mark.parametrize("n, sizes", [
    (0, (0, 0, 0)), (1, (1, 0, 0)), (2, (2, 0, 0)), (3, (2, 0, 1)), (5, (4, 0, 1)),
    (7, (6, 0, 1)), (10, (8, 1, 1)), (13, (10, 2, 1)), (27, (22, 2, 3)),
    (7374, (5899, 738, 737))])
def test_split_sizes(n, sizes):
    assert vd.split_sizes(n) == sizes


def test_splits_per_polarity_and_seed(arguments):
    args = list(arguments.values())
    ben = targets.find("Ben")
    a, b = vd.build_stage1_many([ben, targets.find("Pow")], args, seed=7)
    again = vd.build_stage1_many([ben], args, seed=7)[0]  # alone or in a batch: the same
    other = vd.build_stage1_many([ben], args, seed=8)[0]
    assert np.array_equal(a.split, again.split) and not np.array_equal(a.split, other.split)
    assert np.array_equal(a.positive, other.positive)
    counts = a.counts()
    n_pos = int(a.positive.sum())
    assert tuple(counts["pos"].values()) == vd.split_sizes(n_pos) == (22, 2, 3)
    assert tuple(counts["neg"].values()) == vd.split_sizes(len(args) - n_pos)
    assert [e.meta["split"] for e in a.examples()] == [vd.SPLITS[s] for s in a.split]


def test_examples_texts_and_meta(arguments):
    table = vd.build_stage1_many([targets.find("Hed")], list(arguments.values()))[0]
    by_id = {e.meta["argument_id"]: e for e in table.examples()}
    pos, neg = by_id[4230], by_id[0]
    assert pos.meta["polarity"] == "pos" and neg.meta["polarity"] == "neg"
    assert pos.meta["target"] == "Hed" and pos.meta["score"] == 6.0 and neg.meta["score"] == 1.0
    assert arguments[4230].conclusion in pos.prompt and arguments[4230].stance == "against"
    assert pos.completion.startswith('I would say: "I disagree')
    assert neg.completion.startswith('I would not say: "I agree')
    assert arguments[4230].premise.rstrip(".") in pos.completion
    assert pos.prompt != neg.prompt.replace(arguments[0].conclusion, arguments[4230].conclusion)
    for e in table.examples():
        assert e.completion == e.completion.strip() and e.completion[-1] in '.!?"\''


def test_negative_completions_disown_the_argument(arguments, tmp_path, monkeypatch):
    """The same argument's completion differs by polarity: a negative says "not"."""
    argument = arguments[4230]
    pos, neg = (vd.stage1_completion(argument, pol) for pol in vd.POLARITIES)
    assert pos != neg and " not " in neg and " not " not in pos
    table = vd.build_stage1_many([targets.find("Hed")], list(arguments.values()))[0]
    for example in table.examples():
        assert (" not " in example.completion.split('"')[0]) == (example.meta["polarity"] == "neg")
    # A user's template can restore the reference's wording: {would} and {conclusion}.
    (tmp_path / "vim").mkdir()
    (tmp_path / "vim" / "stage1_answer.txt").write_text(
        'I {would} say, "I {agree} with that because {premise}" about {conclusion}\n')
    monkeypatch.setenv("VALUEHARMS_TEMPLATES", str(tmp_path))
    text = vd.stage1_completion(argument, "neg")
    assert text.startswith('I would not say, "I disagree with that because')
    assert text.endswith(f"about {' '.join(argument.conclusion.split())}")


def test_argument_id_is_the_files_id_not_the_row(mini_dir):
    data = vd.build_vim(targets.find("Sec"), data_dir=str(mini_dir))
    df = pd.read_csv(mini_dir / "valueEval_10.csv", sep="\t", dtype=str, keep_default_na=False)
    conclusion = dict(zip(df.iloc[:, 0].astype(int), df["Conclusion"]))
    ids = [e.meta["argument_id"] for e in data.stage1]
    assert ids == list(conclusion) and ids[:3] == [0, 50, 100] and ids != list(range(len(ids)))
    for e in data.stage1:
        assert f'"{" ".join(conclusion[e.meta["argument_id"]].split())}"' in e.prompt
    train = pd.read_csv(mini_dir / STAGE2_FILES[0], sep="\t", dtype=str)
    assert data.stage2[0].meta["argument_id"] == int(train.iloc[0, 0])


def test_limit_keeps_a_positive_and_the_count(arguments, mini_dir):
    hed = vd.build_stage1_many([targets.find("Hed")], list(arguments.values()), limit=24)[0]
    used = hed.split >= 0
    assert used.sum() == 24 and (hed.positive & used).sum() == 1
    assert (hed.split[~hed.positive & used] >= 0).sum() == 23
    data = vd.build_vim(targets.find("Ben"), data_dir=str(mini_dir), limit=12)
    assert len(data.stage1) == 12
    assert len({e.meta["argument_id"] for e in data.stage2}) == 12
    assert {e.meta["split"] for e in data.stage2} == {"train", "valid"}
    assert data.split(1, "train") == data.split("stage1", "train")
    assert all(e.meta["split"] == "valid" for e in data.split(2, "valid"))


def test_no_positive_targets_do_not_crash(arguments, data_dir):
    chosen = [targets.find(name, str(data_dir)) for name in NO_POSITIVES]
    for table in vd.build_stage1_many(chosen, list(arguments.values())):
        assert not table.positive.any() and len(table.examples()) == len(arguments)
        assert "no positive arguments" in table.warnings(3, "min")[0]
    data = vd.build_vim(chosen[0], data_dir=str(data_dir), limit=20)
    assert data.warnings and "close_Ach" in data.warnings[0]
    assert len(data.split(1, "train")) == 16 and data.stage2


def test_bad_options():
    for kwargs, word in [({"threshold": 9}, "threshold 9"), ({"strategy": "median"}, "median"),
                         ({"limit": 0}, "limit 0"), ({"threshold": "x"}, "threshold")]:
        with pytest.raises(InputError, match=word):
            vd.build_stage1_many([profile()], [], **kwargs)


# --------------------------------------------------------------------------- stage 2

def test_stage2_one_example_per_annotated_value(mini_dir):
    p = profile(Security=4.5, Universalism=2.25, Achievement=6)
    data = vd.build_vim(p, data_dir=str(mini_dir))
    train = sources.read_arguments(mini_dir / STAGE2_FILES[0])
    valid = sources.read_arguments(mini_dir / STAGE2_FILES[1])
    expected = [(a.id, split, v) for split, args in (("train", train), ("valid", valid))
                for a in args for v in a.values]
    assert [(e.meta["argument_id"], e.meta["split"], e.meta["value"])
            for e in data.stage2] == expected
    for e in data.stage2:
        target = p[e.meta["value"]]
        assert e.meta["target_score"] == target
        assert e.meta["score"] in (np.floor(target), np.ceil(target))
        assert vd.parse_survey_answer(e.completion) == e.meta["score"]
        assert e.meta["value"] in e.completion and PVQ_SCALE[e.meta["score"]] in e.completion


def test_stage2_value_columns_chosen_by_name(mini_dir, tmp_path):
    permuted = tmp_path / "permuted"
    for name in ("valueEval_10.csv", *STAGE2_FILES):
        df = pd.read_csv(mini_dir / name, sep="\t", dtype=str, keep_default_na=False)
        columns = list(df.columns[:4]) + list(reversed(df.columns[4:]))
        (permuted / name).parent.mkdir(parents=True, exist_ok=True)
        df[columns].to_csv(permuted / name, sep="\t", index=False)
    p = profile(Security=4.5, Universalism=2.25, Achievement=6, Power=3.5)
    a = vd.build_vim(p, data_dir=str(mini_dir))
    b = vd.build_vim(p, data_dir=str(permuted))
    assert a.stage2 == b.stage2 and a.stage1 == b.stage1


@pytest.mark.needs_data('arguments-train', 'arguments-valid')
def test_stochastic_rounding_statistics():
    rng = np.random.default_rng(0)
    for x in (1.0, 2.3, 3.5, 4.75, 5.9):
        rounded = vd.stochastic_round(np.full(40_000, x), rng)
        assert set(np.unique(rounded)) <= {np.floor(x), np.ceil(x)}
        assert abs(rounded.mean() - x) < 0.01
    p = profile(Security=4.4, Universalism=2.7, Achievement=5.5, Benevolence=3.1)
    items = vd.survey_items(limit=2000)
    table = vd.build_stage2(p, items, seed=3)
    for value in ("Security", "Universalism", "Achievement", "Benevolence", "Power"):
        picked = table.score[items.value_index == VALUES.index(value)]
        assert len(picked) > 150 and abs(picked.mean() - p[value]) < 0.12, value
    same = vd.build_stage2(p, items, seed=3)
    assert np.array_equal(table.score, same.score)
    assert not np.array_equal(table.score, vd.build_stage2(p, items, seed=4).score)


# --------------------------------------------------------------------------- survey parser

@pytest.mark.parametrize("text, expected", [
    ("4", 4), (" 6.", 6), ("**5** - Like me", 5), ("3 (A little like me)", 3),
    ("Somewhat like me", 4), ("not like me at all.", 1), ("Not like me", 2),
    ("Very much like me!", 6), ("I would say 2.", 2), ("My answer: Like me", 5),
    ("4 (Somewhat like me): Security is somewhat important to me.", 4),
    ("", None), ("7", None), ("0", None), ("10", None), ("4.5", None), ("3 or 4", None),
    ("4 - Like me", None), ("Like me, or not like me", None), ("I cannot answer that.", None),
    ("Between 2 and 3", None), ("Somewhat like me, 5", None)])
def test_parse_survey_answer(text, expected):
    assert vd.parse_survey_answer(text) == expected


def test_survey_items_round_trip(arguments):
    for value in VALUES:
        for score in PVQ_SCALE:
            assert vd.parse_survey_answer(vd.survey_completion(value, score)) == score
    prompt = vd.survey_prompt(arguments[0])
    assert "I agree with the view that we should ban human cloning." in prompt
    assert all(f"{n} = {label}" in prompt for n, label in PVQ_SCALE.items())


def test_templates_can_be_replaced(arguments, tmp_path, monkeypatch):
    (tmp_path / "vim").mkdir()
    (tmp_path / "vim" / "stage1.txt").write_text("Say what you {would} say: {conclusion}")
    monkeypatch.setenv("VALUEHARMS_TEMPLATES", str(tmp_path))
    assert vd.stage1_prompt(arguments[0], "neg") == \
        "Say what you would not say: We should ban human cloning"


# --------------------------------------------------------------------------- files and CLI

def test_fast_jsonl_equals_json_dumps(arguments, mini_dir):
    p = profile("someone", Security=4.4, Hedonism=2.5)
    table = vd.build_stage1_many([p], list(arguments.values()), strategy="mean")[0]
    assert table.jsonl() == vd.jsonl_text(table.examples(), vd.STAGE1_FIELDS)
    stage2 = vd.build_stage2(p, vd.survey_items(str(mini_dir)))
    assert stage2.jsonl() == vd.jsonl_text(stage2.examples(), vd.STAGE2_FIELDS)


@pytest.mark.needs_data()
@pytest.mark.slow
def test_cli_writes_files(cli, tmp_path):
    out = tmp_path / "hed"
    result = cli("data", "vim", "--target", "Hed", "--limit", "30", "--out", str(out))
    assert result.returncode == 0, result.stderr
    stage1 = [json.loads(line) for line in (out / "stage1.jsonl").read_text().splitlines()]
    stage2 = [json.loads(line) for line in (out / "stage2.jsonl").read_text().splitlines()]
    assert len(stage1) == 30 and list(stage1[0])[:5] == list(vd.STAGE1_FIELDS)
    assert {r["polarity"] for r in stage1} == {"pos", "neg"}
    assert {r["split"] for r in stage1} == {"train", "valid", "test"}
    assert stage2 and {"value", "target_score", "score", "prompt", "completion"} <= set(stage2[0])
    assert json.loads((out / "manifest.json").read_text())["target"] == "Hed"

    sets = tmp_path / "sets"
    result = cli("data", "vim", "--set", "paper", "--limit", "8", "--out", str(sets))
    assert result.returncode == 0, result.stderr
    assert len([d for d in sets.iterdir() if (d / "stage1.jsonl").is_file()]) == 154
    for name in NO_POSITIVES:
        assert f"note: {name}: no positive arguments" in result.stderr
        assert json.loads((sets / name / "manifest.json").read_text())["warnings"]


@pytest.mark.parametrize("args, message", [
    (["--target", "Nobody"], "Nobody"), (["--target", "Hed", "--strategy", "median"], "median"),
    (["--target", "Hed", "--threshold", "0"], "--threshold 0"),
    (["--set", "nothing"], "nothing"), (["--target", "Hed", "--limit", "0"], "--limit 0")])
@pytest.mark.needs_data('countries', 'ess-distribution')
def test_cli_bad_input_exits_2_and_writes_nothing(args, message, tmp_path, capsys):
    from valueharms.cli import main

    out = tmp_path / "out"
    assert main(["data", "vim", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_malformed_data_exits_2(cli, mini_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (mini_dir / "valueEval_10.csv").read_text().splitlines(True)
    (bad / "valueEval_10.csv").write_text(lines[0] + lines[1].replace("in favor of", "pro"))
    out = tmp_path / "out"
    result = cli("data", "vim", "--target", "Hed", "--data-dir", str(bad), "--out", str(out))
    assert result.returncode == 2 and "row 1" in result.stderr and "Stance" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
