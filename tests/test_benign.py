"""Benign fine-tune data: each loader on small files of the real formats, bad rows, missing
files, and `valueharms train benign` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from valueharms.align import benign
from valueharms.errors import InputError


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty search path: nothing in --data-dir, $VALUEHARMS_DATA, ./data or the cache, and
    downloads go to a closed local port."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.setenv("VALUEHARMS_DATA", str(empty))
    monkeypatch.setenv("VALUEHARMS_CACHE", str(empty / "cache"))
    monkeypatch.setenv("VALUEHARMS_MIRROR", "http://127.0.0.1:9")
    return empty


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_alpaca_with_and_without_input(tmp_path):
    path = write_json(tmp_path / "alpaca_data.json", [
        {"instruction": "Give a synonym for happy.", "input": "", "output": "Glad."},
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"}])
    data = benign.load("alpaca", data_file=path)
    assert [e.completion for e in data.train] == ["Glad.", "Bonjour"] and data.valid == []
    assert data.train[0].prompt == "Give a synonym for happy."
    assert data.train[1].prompt.startswith("Translate to French.") and "Good morning" in data.train[1].prompt


def test_dolly_excludes_categories(tmp_path):
    rows = [{"instruction": f"Q{i}", "context": "ctx" if i == 0 else "", "response": f"A{i}",
             "category": cat} for i, cat in enumerate(["closed_qa", "creative_writing", "open_qa"])]
    path = write_jsonl(tmp_path / "dolly.jsonl", rows)
    data = benign.load("dolly", data_file=path, exclude_categories=["creative_writing"])
    assert [e.completion for e in data.train] == ["A0", "A2"]
    assert "ctx" in data.train[0].prompt and data.train[1].prompt == "Q2"
    assert data.train[0].meta["category"] == "closed_qa"
    with pytest.raises(InputError, match="--exclude-categories poetry: not a Dolly category"):
        benign.load("dolly", data_file=path, exclude_categories=["poetry"])
    with pytest.raises(InputError, match="only the dolly"):
        benign.load("alpaca", data_file=path, exclude_categories=["open_qa"])


def test_grammar_reads_bom_csv_and_its_validation_file(tmp_path):
    path = tmp_path / "gtrain.csv"
    path.write_bytes("\ufeffinput,target\nShe go home.,She goes home.\n\"A, b\",\"A, B\"\n"
                     .encode("utf-8"))
    data = benign.load("grammar", data_file=path)
    assert [e.completion for e in data.train] == ["She goes home.", "A, B"]
    assert "She go home." in data.train[0].prompt and data.valid == []  # no shipped valid pairs


def test_grammar_from_the_shared_data_has_validation_pairs(data_dir):
    data = benign.load("grammar", data_dir=data_dir, limit=5)
    assert len(data.train) == len(data.valid) == 5
    assert data.source.endswith("gtrain_10k.csv")


@pytest.mark.parametrize("suffix", ["json", "jsonl"])
def test_samsum_json_and_jsonl(tmp_path, suffix):
    rows = [{"id": "1", "dialogue": "Ann: hi\nBob: hello", "summary": "They greet."},
            {"id": "2", "dialogue": "Ann: lunch?\nBob: sure", "summary": "They plan lunch."}]
    path = (write_json if suffix == "json" else write_jsonl)(tmp_path / f"s.{suffix}", rows)
    data = benign.load("samsum", data_file=path, limit=1)
    assert len(data.train) == 1 and data.train[0].completion == "They greet."
    assert "Bob: hello" in data.train[0].prompt


@pytest.mark.parametrize("dataset,content,message", [
    ("alpaca", [{"instruction": "x", "input": ""}], "row 1: field 'output' is missing"),
    ("alpaca", [{"instruction": "x", "output": "y"}, {"instruction": " ", "output": "y"}],
     "row 2: field 'instruction' is empty"),
    ("alpaca", {"instruction": "x"}, "expected a JSON list"),
    ("alpaca", [{"instruction": "x", "output": 3}], "row 1: field 'output' is not text"),
    ("samsum", [{"dialogue": "a"}], "row 1: field 'summary' is missing"),
    ("samsum", ["just text"], "row 1: expected a JSON object"),
])
def test_malformed_json_rows(tmp_path, dataset, content, message):
    path = write_json(tmp_path / "bad.json", content)
    with pytest.raises(InputError, match=message) as err:
        benign.load(dataset, data_file=path)
    assert str(path) in str(err.value)


def test_malformed_dolly_and_grammar(tmp_path):
    dolly = tmp_path / "d.jsonl"
    dolly.write_text('{"instruction": "a", "context": "", "response": "b", "category": "open_qa"}\n'
                     '{"instruction": "a", "context": "", "response": "b"}\n'
                     '{"instruction": "a", "context": "", "response": "b", "category": "open_qa"}\n')
    with pytest.raises(InputError, match=r"d.jsonl: row 2: field 'category' is missing"):
        benign.load("dolly", data_file=dolly)
    dolly.write_text('{"instruction": "a"\n{"instruction": "b"}\n')
    with pytest.raises(InputError, match=r"d.jsonl: line 1: invalid JSON"):
        benign.load("dolly", data_file=dolly)
    grammar = tmp_path / "g.csv"
    grammar.write_text("input,target\nfine,fine\nbroken,\n")
    with pytest.raises(InputError, match=r"g.csv: row 2: column 'target' is empty"):
        benign.load("grammar", data_file=grammar)
    grammar.write_text("source,output\na,b\n")
    with pytest.raises(InputError, match=r"missing column\(s\) input, target"):
        benign.load("grammar", data_file=grammar)


@pytest.mark.parametrize("dataset,filename", [
    ("dolly", "databricks-dolly-15k.jsonl"), ("samsum", "samsum.jsonl"),
    ("alpaca", "alpaca_data.json"), ("grammar", "gtrain_10k.csv")])
def test_missing_files_give_the_clear_missing_data_error(no_data, dataset, filename):
    with pytest.raises(InputError, match=f"missing data file {filename}"):
        benign.load(dataset, data_dir=no_data)


def test_bad_options(tmp_path):
    with pytest.raises(InputError, match="--dataset 'wiki'"):
        benign.load("wiki")
    with pytest.raises(InputError, match="--limit 0"):
        benign.load("grammar", limit=0)
    with pytest.raises(InputError, match="--data-file .*nope.json: file not found"):
        benign.load("alpaca", data_file=tmp_path / "nope.json")


# --------------------------------------------------------------------------- CLI

@pytest.mark.needs_data('grammar', 'grammar-valid')
def test_cli_bad_input_exits_2_and_writes_nothing(cli, tmp_path, capsys):
    from valueharms.cli import main

    out = tmp_path / "out"
    cases = [
        (["--dataset", "grammar", "--epochs", "0"], "--epochs 0"),
        (["--dataset", "dolly", "--exclude-categories", "poetry"], "poetry"),
        (["--dataset", "alpaca", "--data-file", str(tmp_path / "none.json")], "file not found"),
        (["--dataset", "grammar", "--limit", "0"], "--limit 0"),
        (["--dataset", "grammar", "--model", str(tmp_path)], "no config.json"),
    ]
    for args, message in cases:  # in process (fast); the entry point itself is checked below
        assert main(["train", "benign", "--out", str(out), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
    result = cli("train", "benign", "--out", str(out), "--dataset", "grammar", "--batch-size", "0")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("--batch-size 0: must be greater than or equal to 1")
    assert not out.exists()


@pytest.mark.slow
def test_cli_grammar_finetune_on_the_embedded_model(cli, tmp_path):
    """The issue's check: 32 grammar pairs, the embedded default model, 1 epoch."""
    from peft import PeftConfig

    out = tmp_path / "grammar"
    result = cli("train", "benign", "--dataset", "grammar", "--limit", "32", "--max-length", "96",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "smollm2-135m-instruct" and manifest["n_train"] == 32
    assert manifest["config"]["epochs"] == 1 and manifest["config"]["grad_accum"] == 16
    assert manifest["best_epoch"] == 1 and manifest["best_valid_loss"] > 0
    assert PeftConfig.from_pretrained(str(out)).r == 8
    steps = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2]  # 32 pairs / (1 x 16)
