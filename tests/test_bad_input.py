"""The bad-input corpus: each malformed data file, profile, study file, adapter directory or
record file gives exit code 2, one line on stderr naming the fault, and no output at all."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import DATA, need_data
from valueharms.cli import main


def valueeval_head() -> list[str]:
    """The first 40 lines of the real ValueEval file (read when a case is built, never at import)."""
    path = need_data("valueeval") / "valueEval_10.csv"
    return path.read_text(encoding="utf-8").splitlines(keepends=True)[:40]


def data_dir_with(tmp: Path, name: str, content: str | bytes) -> Path:
    """A data directory like the shared one (symlinks) with ``name`` replaced by ``content``."""
    root = tmp / "data"
    for entry in DATA.iterdir():
        (root / entry.name).parent.mkdir(parents=True, exist_ok=True)
        if entry.name != Path(name).parts[0]:
            (root / entry.name).symlink_to(entry)
    if len(Path(name).parts) > 1:  # a file inside a folder: link the folder's other files
        folder = DATA / Path(name).parts[0]
        for entry in folder.rglob("*"):
            rel = entry.relative_to(DATA)
            if entry.is_file() and str(rel) != name:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).symlink_to(entry)
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def valueeval(edit: Callable[[list[str]], list[str]]) -> Callable[[], str]:
    return lambda: "".join(edit(valueeval_head()))


def _cell(lines: list[str], row: int, col: int, value: str) -> list[str]:
    cells = lines[row].rstrip("\n").split("\t")
    cells[col] = value
    lines[row] = "\t".join(cells) + "\n"
    return lines


Content = str | bytes | Callable[[], str | bytes]  # a callable reads the real data lazily


def _bytes(content: Content) -> bytes:
    content = content() if callable(content) else content
    return content.encode() if isinstance(content, str) else content


def vim(name: str, content: Content):
    def build(tmp: Path):
        need_data()  # the rest of the real data folder is linked beside the broken file
        return (["data", "vim", "--target", "Pow", "--data-dir",
                 str(data_dir_with(tmp, name, _bytes(content)))], name.split("/")[-1])
    return build


def file_case(argv: list[str], name: str, content: Content, expect: str):
    def build(tmp: Path):
        path = tmp / name
        path.write_bytes(_bytes(content))
        return [a.replace("{file}", str(path)).replace("{tmp}", str(tmp)) for a in argv], expect
    return build


def needs(keys: tuple[str, ...], build):
    """A case that reaches the named data sets before its fault (skipped without them)."""
    def built(tmp: Path):
        need_data(*keys)
        return build(tmp)
    return built


def adapter_case(argv: list[str], config: str | None, expect: str):
    def build(tmp: Path):
        adapter = tmp / "adapter"
        adapter.mkdir()
        if config is not None:
            (adapter / "adapter_config.json").write_text(config)
        return [a.replace("{adapter}", str(adapter)) for a in argv], expect
    return build




def pvq40_without(item: int) -> Callable[[], str]:
    """The real PVQ-40 key without one item's line (read when the case is built)."""
    def content() -> str:
        lines = (need_data("pvq40") / "pvq40.csv").read_text(encoding="utf-8")
        return "".join(ln for ln in lines.splitlines(keepends=True)
                       if not ln.startswith(f"{item},"))
    return content
PROFILE_HEADER = ("name,Achievement,Benevolence,Conformity,Hedonism,Power,Security,Self-direction,"
                  "Stimulation,Tradition,Universalism\n")


def ess_with(rows: Callable[[str], str]) -> Callable[[], str]:
    """The real ESS header followed by ``rows(header)`` (read when the case is built)."""
    def content() -> str:
        header = (need_data("ess") / "ess.csv").read_text().splitlines()[0]
        return rows(header)
    return content


GEN = '{"system": "vanilla", "benchmark": "rtp", "prompt_id": "1", "sample": 0, "text": "hi", "model": "m"}\n'

CASES = {
    # ValueEval arguments (data vim reads them before any model)
    "valueeval renamed column": vim("valueEval_10.csv", valueeval(
        lambda ls: [ls[0].replace("Power", "Powr")] + ls[1:])),
    "valueeval comma delimiter": vim("valueEval_10.csv", valueeval(
        lambda ls: [line.replace("\t", ",") for line in ls])),
    "valueeval label 2": vim("valueEval_10.csv", valueeval(lambda ls: _cell(ls, 5, 8, "2"))),
    "valueeval stance": vim("valueEval_10.csv", valueeval(lambda ls: _cell(ls, 3, 2, "neutral"))),
    "valueeval empty": vim("valueEval_10.csv", ""),
    "valueeval bytes": vim("valueEval_10.csv",
                           lambda: valueeval(lambda ls: ls)().encode() + b"\xff\xfe\x00"),
    "valueeval duplicate id": vim("valueEval_10.csv", valueeval(lambda ls: ls + [ls[1]])),
    "survey split stance": vim("argument_generation/value_split/train.csv",
                               lambda: (DATA / "argument_generation/value_split/train.csv")
                               .read_text().replace("against", "maybe", 1)),
    # ESS answers and published profiles
    "ess code 7": file_case(["targets", "derive", "--ess", "{file}", "--coding", "raw", "--out",
                             "{tmp}/out/t.csv"], "ess.csv",
                            ess_with(lambda h: h + "\n1," + ",".join(["7"] * 21) + "\n"), "ess.csv"),
    "ess missing item": file_case(["targets", "derive", "--ess", "{file}", "--coding", "raw",
                                   "--out", "{tmp}/out/t.csv"], "ess.csv",
                                  ess_with(lambda h: h.rsplit(",", 1)[0] + "\n1,"
                                           + ",".join(["3"] * 20) + "\n"),
                                  "ess.csv"),
    "ess text code": file_case(["targets", "derive", "--ess", "{file}", "--coding", "raw", "--out",
                                "{tmp}/out/t.csv"], "ess.csv",
                               ess_with(lambda h: h + "\n1," + ",".join(["x"] * 21) + "\n"), "ess.csv"),
    # User profiles
    "profile score 7": file_case(["targets", "list", "--set", "{file}"], "p.csv",
                                 PROFILE_HEADER + "me,7,1,1,1,1,1,1,1,1,1\n", "outside"),
    "profile missing value": file_case(["targets", "list", "--set", "{file}"], "p.csv",
                                       PROFILE_HEADER.replace(",Universalism", "")
                                       + "me,1,1,1,1,1,1,1,1,1\n", "Universalism"),
    "profile json list": file_case(["targets", "list", "--set", "{file}"], "p.json", "[1, 2]",
                                   "p.json"),
    "profile toml text score": file_case(["targets", "list", "--set", "{file}"], "p.toml",
                                         '[me]\n' + "\n".join(
                                             f'{v} = "high"' for v in PROFILE_HEADER.strip()
                                             .split(",")[1:]) + "\n", "non-numeric"),
    "profile duplicate": file_case(["targets", "list", "--set", "{file}"], "p.csv",
                                   PROFILE_HEADER + "me,1,1,1,1,1,1,1,1,1,1\n" * 2, "me"),
    "profile extension": file_case(["targets", "list", "--set", "{file}"], "p.txt", "x", ".txt"),
    # Alignment check instruments and targets (read before the model loads)
    "evaluate unknown instrument": file_case(
        ["evaluate", "alignment", "--target", "Pow", "--instrument", "pvq99", "--out",
         "{tmp}/out"], "unused.txt", "", "--instrument"),
    "evaluate profile missing value": file_case(
        ["evaluate", "alignment", "--profiles", "{file}", "--target", "me", "--out", "{tmp}/out"],
        "p.csv", PROFILE_HEADER.replace(",Universalism", "") + "me,1,1,1,1,1,1,1,1,1\n",
        "Universalism"),
    "pvq40 missing item": lambda tmp: (
        ["evaluate", "alignment", "--target", "Pow", "--out", str(tmp / "out"), "--data-dir",
         str(data_dir_with(tmp, "pvq40.csv", _bytes(pvq40_without(17))))], "item 17"),
    "questionnaire file missing item": file_case(
        ["evaluate", "alignment", "--target", "Pow", "--instrument", "{file}", "--out",
         "{tmp}/out"], "q.csv", pvq40_without(2), "item 2 is missing"),
    # Benign fine-tuning files (read before the model loads)
    "grammar columns": file_case(["train", "benign", "--dataset", "grammar", "--data-file",
                                  "{file}", "--out", "{tmp}/out"], "g.csv",
                                 "\ufeffsource,target\na,b\n", "g.csv"),
    "alpaca not a list": file_case(["train", "benign", "--dataset", "alpaca", "--data-file",
                                    "{file}", "--out", "{tmp}/out"], "a.json", '{"a": 1}',
                                   "a.json"),
    "dolly bad line": file_case(["train", "benign", "--dataset", "dolly", "--data-file",
                                 "{file}", "--out", "{tmp}/out"], "d.jsonl",
                                '{"instruction": "a", "context": "", "response": "b"}\n{oops\n',
                                "d.jsonl"),
    # Records between the stages
    "generations bad json": file_case(["score", "--scorer", "offline-toxicity", "--in", "{file}",
                                       "--out", "{tmp}/out/s.jsonl"], "g.jsonl",
                                      GEN + "{not json\n", "g.jsonl"),
    "generations missing text": file_case(["score", "--scorer", "offline-toxicity", "--in",
                                           "{file}", "--out", "{tmp}/out/s.jsonl"], "g.jsonl",
                                          GEN.replace('"text": "hi", ', ""), "text"),
    "scores bad record": file_case(["metrics", "--in", "{file}", "--out", "{tmp}/out"],
                                   "s.jsonl", '{"system": "vanilla"}\n', "s.jsonl"),
    # Adapter directories
    "adapter missing config (generate)": adapter_case(
        ["generate", "--system", "vim:Pow", "--adapter", "{adapter}", "--benchmark", "hexphi",
         "--out", "{adapter}/../out/g.jsonl"], None, "adapter"),
    "adapter missing config (evaluate)": adapter_case(
        ["evaluate", "alignment", "--adapter", "{adapter}", "--target", "Pow", "--out",
         "{adapter}/../out"], None, "adapter_config.json"),
    "adapter for a vanilla system": adapter_case(
        ["generate", "--system", "vanilla", "--adapter", "{adapter}", "--benchmark", "hexphi",
         "--out", "{adapter}/../out/g.jsonl"], "{}", "adapter"),
    # Study files
    "study unknown target": needs(("countries",), file_case(
        ["run", "{file}"], "s.toml", '[study]\nout="out"\n[targets]\nnames=["Zzz"]\n', "Zzz")),
    "study missing benign file": file_case(
        ["run", "{file}"], "s.toml",
        '[study]\nout="out"\n[systems]\nmethods=["benign:dolly"]\n[benign]\n'
        'data_files={dolly="none.jsonl"}\n[benchmarks.rtp]\n[scorers]\nrtp="offline-toxicity"\n',
        "none.jsonl"),
    "study unknown instrument": file_case(["run", "{file}", "--dry-run"], "s.toml",
                                          '[study]\nout="out"\n[benchmarks.rtp]\n[scorers]\n'
                                          'rtp="offline-toxicity"\n[analysis]\n'
                                          'instrument="pvq99"\n',
                                          "[analysis] instrument"),
    "study unknown scorer option": file_case(
        ["run", "{file}"], "s.toml",
        '[study]\nout="out"\n[benchmarks.rtp]\n[scorers]\nrtp="offline-toxicity"\n'
        '[scorer_options.regard]\nmodel="x"\n', "regard"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_no_output(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VALUEHARMS_DATA", str(DATA))
    argv, expect = CASES[case](tmp_path)
    if "--out" not in argv and argv[0] == "data":
        argv += ["--out", str(tmp_path / "out")]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (case, err)
    assert len(err.splitlines()) == 1, err
    assert expect.lower() in err.lower(), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
