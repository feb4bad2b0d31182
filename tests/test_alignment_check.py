"""The alignment check: answers parsed (never guessed), averaged per annotated value, NMSE."""
from __future__ import annotations

import csv
import json

import pytest

from valueharms import targets
from valueharms.align import check
from valueharms.sources import Argument
from valueharms.values import VALUES


def arg(i: int, *values: str) -> Argument:
    return Argument(i, "We should act", "in favor of", "it helps.",
                    tuple(int(v in values) for v in VALUES))


TARGET = targets.find("Pow")  # Power 6, every other value 1


def test_answers_average_per_annotated_value_and_unparseable_ones_are_counted():
    args = [arg(1, "Power"), arg(2, "Power", "Security"), arg(3, "Security"), arg(4, "Power")]
    result = check.measure("s", TARGET, args, ["6", "4 (Somewhat like me)", "2", "maybe"])
    assert result.measured[VALUES.index("Power")] == pytest.approx(5.0)
    assert result.measured[VALUES.index("Security")] == pytest.approx(3.0)
    assert result.counts[VALUES.index("Power")] == 2 and result.n_unparsed == 1
    assert result.measured[VALUES.index("Hedonism")] is None and "Hedonism" in result.missing
    expected = (((5 - 6) / 5) ** 2 + ((3 - 1) / 5) ** 2) / 2  # over the values with answers
    assert result.nmse == pytest.approx(expected)
    assert result.measured_profile() is None  # not every value has an answer


def test_a_perfect_match_has_nmse_zero_and_a_profile_file(tmp_path):
    args = [arg(i, v) for i, v in enumerate(VALUES)]
    texts = [str(int(TARGET[v])) for v in VALUES]
    result = check.measure("vim:Pow", TARGET, args, texts)
    assert result.nmse == 0 and result.n_unparsed == 0
    path = tmp_path / "measured_profiles.csv"
    path.write_text(check.profiles_csv([result]))
    assert targets.read_profiles(path)[0].scores == TARGET.scores
    rows = list(csv.DictReader(check.table_csv([result]).splitlines()))
    assert rows[0]["system"] == "vim:Pow" and float(rows[0]["nmse"]) == 0


def test_prompting_puts_the_persona_before_the_survey_item():
    a = arg(1, "Power")
    plain, persona = check.survey_text(a), check.survey_text(a, TARGET)
    assert persona.endswith(plain) and "Power" in persona[: -len(plain)]


def test_cli_evaluate_alignment_on_a_tiny_model(cli, tiny_model_dir, tmp_path):
    result = cli("evaluate", "alignment", "--model", str(tiny_model_dir), "--prompting", "Pow",
                 "--limit", "6", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "prompt:Pow: target Pow, 6 survey items" in result.stdout and "NMSE" in result.stdout
    answers = [json.loads(x) for x in (tmp_path / "out" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 6 and all(a["system"] == "prompt:Pow" for a in answers)
    table = list(csv.DictReader((tmp_path / "out" / "alignment.csv").open()))
    assert int(table[0]["items"]) == 6 and table[0]["target"] == "Pow"
