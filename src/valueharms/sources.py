"""Where every data set lives, and strict readers that turn its files into typed records.

Search order for a file: ``--data-dir``, ``$VALUEHARMS_DATA``, ``./data``, ``../shared/data``,
then the download cache. On a connected machine a missing file is downloaded from its public
source (or ``$VALUEHARMS_MIRROR/<file>``) into the cache and its SHA-256 is verified.
Every reader raises :class:`InputError` with one line naming file, row and column.
"""
from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .files import cache_root, read_jsonl, read_jsonl_lines, read_text  # noqa: F401  (re-exported)
from .values import PVQ21_ITEMS, PVQ40_KEY, VALUES, Profile

ESS_MISSING_CODES = (66, 77, 88, 99)
STANCES = ("in favor of", "against")


@dataclass(frozen=True)
class HubFile:
    """A file of a Hugging Face dataset repository at a pinned revision."""

    repo: str
    filename: str
    revision: str
    gated: bool = False  # needs $HF_TOKEN of an account that accepted the terms


@dataclass(frozen=True)
class DataSet:
    """One file the toolkit reads: name, where it comes from, and how to check it.

    ``url`` (or ``hub``) is where ``valueharms data fetch`` gets it; ``auto``: a missing
    file is downloaded on first use too (small files whose public address is stable).
    ``git_blob``: git's object id of the file at the pinned commit of ``url``, the checksum
    of a set whose SHA-256 we could not take from a copy of our own (git hashes the content
    too: SHA-1 of ``blob <size>\0`` and the bytes). ``made_from``: for a set of ours converted
    from a published file in another format, that file and the conversion (``sha256`` is then
    our file's). ``no_source``: why a set without ``url``, ``hub`` or ``made_from`` has none,
    said by ``valueharms data list`` and the missing-file error.
    """

    key: str
    filename: str  # relative to a data directory
    origin: str  # human-readable public source
    url: str | None  # direct download, when a stable public one exists
    sha256: str | None
    description: str
    hub: HubFile | None = None
    auto: bool = False
    git_blob: str | None = None
    made_from: MadeFrom | None = None
    no_source: str = ""

    @property
    def fetchable(self) -> bool:
        """Whether ``valueharms data fetch`` has a public source for it."""
        return bool(self.url or self.hub or self.made_from)


@dataclass(frozen=True)
class MadeFrom:
    """The published file a set is converted from, and the conversion."""

    published: DataSet  # where the published file is fetched from and how it is checked
    convert: Callable[[Path, Path], None]  # (published file, our file); InputError when wrong


# The paper's repository at the commit its data files were checked against (every checksum
# below for these files is that commit's file).
PAPER_COMMIT = "4a20909328a10dea73761b0a96afc2d10a2cb60a"
_PAPER = f"https://raw.githubusercontent.com/JaehyeokLee-119/Unintended-Harms-LLM/{PAPER_COMMIT}/data/"
_PAPER_REPO = "the paper's published code (Choi et al., ACL 2025)"
# The original VIM code (Kang et al., 2023) at its newest commit; pvq40.xlsx is unchanged
# since the repository's first commit.
_VIM = ("https://raw.githubusercontent.com/dongjunKANG/VIM/"
        "034fcfa426040755db518c326e93d3934f7d77c1/data/")
_HB = "https://raw.githubusercontent.com/facebookresearch/ResponsibleNLP/main/holistic_bias/dataset/v1.1/"
# Stanford Alpaca's repository at the commit whose tree gave alpaca_data.json's blob id.
_ALPACA = ("https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/"
           "761dc5bfbdeeffa89b8bff5d038781a4055f796a/")



def pvq40_from_xlsx(xlsx: Path, out: Path) -> None:
    """Write our ``pvq40.csv`` (item,value,text) from the VIM code's ``pvq40.xlsx``.

    The sheet has one column, ``question``: the 40 portraits in item order. Each item's value
    is the PVQ-40 scoring key's (the sheet has none). Clean-up: the stray ``</span>`` tag at
    the end of item 9 is removed and spaces around a text are trimmed (items 15 and 25 end in
    one). Written with CRLF line ends, as our copy always was, so its SHA-256 checks the
    conversion.
    """
    try:
        sheet = pd.read_excel(xlsx, dtype=str)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{xlsx}: not a readable xlsx sheet ({exc})") from None
    if "question" not in sheet.columns:
        raise InputError(f"{xlsx}: sheet 1: no column 'question' (found "
                         f"{', '.join(map(str, sheet.columns))})")
    texts = sheet["question"].fillna("").str.replace("</span>", "", regex=False).str.strip()
    value_of = {item: value for value, items in PVQ40_KEY.items() for item in items}
    if len(texts) != len(value_of) or (texts == "").any():
        raise InputError(f"{xlsx}: column 'question': expected {len(value_of)} non-empty "
                         f"portraits, found {int((texts != '').sum())} in {len(texts)} rows")
    numbers = range(1, len(texts) + 1)
    table = pd.DataFrame({"item": numbers, "value": [value_of[n] for n in numbers],
                          "text": texts.to_list()})
    table.to_csv(out, index=False, lineterminator="\r\n")


DATASETS: dict[str, DataSet] = {d.key: d for d in [
    DataSet("valueeval", "valueEval_10.csv", f"Touche23-ValueEval, as processed in {_PAPER_REPO}",
            _PAPER + "valueEval_10.csv",
            "6f843d64b1874267c8fb42d67cf85533cd5847d935533ff993b5ab1345fe5385",
            "arguments labelled with the 10 basic values (TAB-separated)"),
    DataSet("arguments-train", "argument_generation/value_split/train.csv", _PAPER_REPO,
            _PAPER + "argument_generation/value_split/train.csv",
            "cd675fe589b6458a4c8d58897d963e4cd6c39327f0c49ae2cb4e949b2c1b9b70",
            "survey-stage training arguments"),
    DataSet("arguments-valid", "argument_generation/value_split/valid.csv", _PAPER_REPO,
            _PAPER + "argument_generation/value_split/valid.csv",
            "1bcb924585c0932c6ee39e1a0f81d65a6e0edb944c062d85bf981255baf70609",
            "survey-stage validation arguments"),
    DataSet("arguments-test", "argument_generation/test.csv", _PAPER_REPO,
            _PAPER + "argument_generation/test.csv",
            "182e81c32d131973f7807df9377bac15a99e7ee43b355101c6d16e6fadb66181",
            "survey-stage test arguments"),
    DataSet("ess", "ess.csv", f"European Social Survey, PVQ-21 items, as in {_PAPER_REPO}",
            _PAPER + "ess.csv", "0272824f2d562fc03fb926bc27d4b9ac999cc80c2a3d0818e84e25ca86b09e41",
            "raw ESS answers to the 21 PVQ items"),
    DataSet("ess-distribution", "ess_distribution.csv", _PAPER_REPO, _PAPER + "ess_distribution.csv",
            "4590b666d1e81c2c2c2d416da003302d837f93011cccce64828acfe2a51f40a6",
            "per-respondent value profiles (raw ESS coding)"),
    DataSet("countries", "country_and_group.csv", _PAPER_REPO, _PAPER + "country_and_group.csv",
            "247d8d90c860b83cec22c958f409296a42c73b0d19c050b6ffe08937e6ee1d86",
            "mean value scores of countries and demographic groups"),
    DataSet("pvq40", "pvq40.csv", "Portrait Values Questionnaire, 40 items (Schwartz et al., "
            "2001), converted from the original VIM code's data/pvq/pvq40.xlsx", None,
            "f5d70d964170c9613d67dffb0b7f921cec0b19872442f71c2477c38aec3cffb6",
            "item,value,text: the 40 portraits and their value (the scoring key)",
            made_from=MadeFrom(DataSet("pvq40", "pvq40.xlsx", "the VIM code (Kang et al., 2023)",
                                       _VIM + "pvq/pvq40.xlsx", None, "the 40 portraits",
                                       git_blob="907f2eedf91309c339fe462cd42d7c1e075efb09"),
                               pvq40_from_xlsx)),
    DataSet("rtp", "real_toxic_prompts.csv",
            f"RealToxicityPrompts (Gehman et al., 2020), the prompt texts as in {_PAPER_REPO}",
            _PAPER + "real_toxic_prompts.csv",
            "8c5116e61b916b22557f47e5d05cedea02b9b0fa4791e15241d4eef5bd5af7fd",
            "toxic prompt texts, no header"),
    DataSet("hexphi", "hex-phi.csv", f"HEx-PHI (Qi et al., 2023; gated on Hugging Face as "
            f"LLM-Tuning-Safety/HEx-PHI), one file as in {_PAPER_REPO}", _PAPER + "hex-phi.csv",
            "50908beeb410d5bc90620af1cd56e57311dc8b0bb22412a6bb8a19b106473330",
            "harmful instructions, 11 categories x 30"),
    DataSet("beavertails", "BeaverTails-Evaluation.csv",
            f"PKU-Alignment/BeaverTails-Evaluation, as in {_PAPER_REPO}",
            _PAPER + "BeaverTails-Evaluation.csv",
            "7d88f60b9cd104ca2df28613685d7dbbc0c7b372acf0c936e00666a23b8977bb",
            "evaluation prompts, 14 categories x 50"),
    DataSet("advbench", "harmful_behaviors.csv", "AdvBench (Zou et al., 2023)",
            "https://raw.githubusercontent.com/llm-attacks/llm-attacks/main/data/advbench/harmful_behaviors.csv",
            "6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1",
            "harmful behaviours", auto=True),
    DataSet("grammar", "gtrain_10k.csv", f"grammar-correction pairs (C4-200M derived), as in "
            f"{_PAPER_REPO}", _PAPER + "gtrain_10k.csv",
            "db8c78516b73f90e096c6f5822f2e2a17d4832b217031605dd844bb17fc0db13",
            "benign fine-tuning baseline (BOM-prefixed CSV)"),
    DataSet("grammar-valid", "grammar_validation.csv", f"grammar-correction pairs, as in "
            f"{_PAPER_REPO}", _PAPER + "grammar_validation.csv",
            "54c81412aa32971b9505d309b0fd4e44f9a6e25eb68e1d7d81b259ff44c58411",
            "benign fine-tuning validation"),
    *[DataSet(f"holisticbias-{part}", f"holistic_bias_v1.1/{part}.json",
              "HolisticBias v1.1 (Smith et al., 2022; MIT)", _HB + f"{part}.json", sha, "",
              auto=True)
      for part, sha in [
          ("descriptors", "c1328f0edfdeefb76302d360a01878df3db55f18026f4ea1956b4a0f52daf943"),
          ("nouns", "9bbe15bf01ea8827fd5d68a81ee2b05e04bd5f79478d9027efec0b4dbd232ee6"),
          ("standalone_noun_phrases",
           "bac592574f81df55e8c8d8e3919a866d43cbd8df5ae9376a68d95e7b83dbebac"),
          ("sentence_templates",
           "8b1cf8fc3c9a10b12cf77902e8c2ff3d80e3fcfff2f177a00256925acb4f53a5")]],
    DataSet("alpaca", "alpaca_data.json", "Stanford Alpaca (the same file is in the paper's "
            "code's data folder)", _ALPACA + "alpaca_data.json", None,
            "instruction/input/output JSON list", auto=True,
            git_blob="3779ddbc040543ab1834ef216c983d6fcc06cc9a"),
    DataSet("dolly", "databricks-dolly-15k.jsonl", "databricks/databricks-dolly-15k", None,
            "2df9083338b4abd6bceb5635764dab5d833b393b55759dffb0959b6fcbf794ec",
            "instruction/context/response JSONL",
            hub=HubFile("databricks/databricks-dolly-15k", "databricks-dolly-15k.jsonl",
                        "d72c16e4644a463b9c678c71d9440befd4594556")),
    DataSet("dolly-no-safety", "databricks-dolly-15k-no-safety.jsonl",
            "Dolly with safety-flavoured responses removed (Qi et al., 2023, "
            "LLM-Tuning-Safety/LLMs-Finetuning-Safety dolly_remove_safety.py); in the paper's "
            "code's data folder", _PAPER + "databricks-dolly-15k-no-safety.jsonl", None,
            "instruction/context/response JSONL",
            git_blob="ea82685161fb0853432bd90f4d5d9b9d4ebb8870"),
    DataSet("samsum", "samsum.jsonl", "SAMSum (Gliwa et al., 2019)", None, None,
            "dialogue/summary JSON or JSONL",
            no_source="no pinned public file with a checksum; without a local file, `train "
                      "benign --dataset samsum` loads the Hugging Face copy Samsung/samsum "
                      "with the optional datasets package (unchecked)"),
]}


def search_path(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for data files, first match wins."""
    dirs = [Path(data_dir)] if data_dir else []
    if os.environ.get("VALUEHARMS_DATA"):
        dirs.append(Path(os.environ["VALUEHARMS_DATA"]))
    dirs += [Path("data"), Path("../shared/data"), cache_dir()]
    return dirs


def cache_dir() -> Path:
    """Where downloaded data files go."""
    return cache_root() / "data"


def on_search_path(key: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Where data set ``key``'s file is on the search path (the first folder that has it), or
    None: nothing is downloaded."""
    filename = DATASETS[key].filename
    return next((d / filename for d in search_path(data_dir) if (d / filename).is_file()), None)


def locate(key: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of data set ``key``: found on the search path, else downloaded (from the mirror,
    or for the ``auto`` sets from their public address), else InputError."""
    ds = DATASETS[key]
    found = on_search_path(key, data_dir)
    if found is not None:
        return found
    mirror = os.environ.get("VALUEHARMS_MIRROR")
    if mirror or (ds.auto and ds.url):
        from .fetch import download

        return download(ds, progress=False)
    how = f"run `valueharms data fetch {key}`, put it" if ds.fetchable else \
        f"it has no public source to fetch from ({ds.no_source}): put it"
    raise InputError(
        f"missing data file {ds.filename} ({ds.origin}); looked in "
        f"{', '.join(str(d) for d in search_path(data_dir))}; {how} in one of these or pass --data-dir DIR")


# --------------------------------------------------------------------------- raw text

def read_table(path: str | os.PathLike, sep: str, columns: Sequence[str], *,
               header: bool = True) -> pd.DataFrame:
    """A CSV/TSV as strings, checked to have exactly ``columns`` (in order, by name).

    A first column named "" or "Unnamed: 0" is the id column and is returned as "id".
    """
    path = Path(path)
    text = read_text(path)
    first = text.split("\n", 1)[0]
    other = "," if sep == "\t" else "\t"
    if header and sep not in first and other in first:
        raise InputError(f"{path}: line 1: wrong delimiter, expected "
                         f"{'TAB' if sep == chr(9) else 'comma'}-separated columns")
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                         header=0 if header else None, quoting=csv.QUOTE_MINIMAL)
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed table ({str(exc).strip()})") from None
    if not header:
        df.columns = list(columns)[: len(df.columns)]
        return df
    names = ["id" if c in ("", "Unnamed: 0") else c for c in df.columns]
    df.columns = names
    missing = [c for c in columns if c not in names]
    if missing:
        raise InputError(f"{path}: line 1: missing column(s) {', '.join(missing)} "
                         f"(found {', '.join(names)})")
    return df[list(columns)]


def _row(i: int) -> int:
    """Data row number for messages: 1-based, header not counted."""
    return int(i) + 1


def check_nonempty_rows(path: Path, df: pd.DataFrame, columns: Sequence[str]) -> None:
    """InputError naming the first row whose cell in ``columns`` is blank."""
    for col in columns:
        blank = df.index[df[col].str.strip() == ""]
        if len(blank):
            raise InputError(f"{path}: row {_row(blank[0])}: column {col!r} is empty")


def to_numbers(path: Path, df: pd.DataFrame, columns: Sequence[str],
               kind: type = float) -> np.ndarray:
    """Columns as a numeric array; the first non-number is an InputError naming row/column."""
    out = np.empty((len(df), len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        parsed = pd.to_numeric(df[col], errors="coerce")
        bad = parsed.index[parsed.isna()]
        if len(bad):
            raise InputError(f"{path}: row {_row(bad[0])}: column {col!r}: "
                             f"{df[col].iloc[bad[0]]!r} is not a number")
        out[:, j] = parsed.to_numpy()
        if kind is int and not np.all(out[:, j] == np.round(out[:, j])):
            i = int(np.argmax(out[:, j] != np.round(out[:, j])))
            raise InputError(f"{path}: row {_row(i)}: column {col!r}: "
                             f"{df[col].iloc[i]!r} is not a whole number")
    return out


# --------------------------------------------------------------------------- arguments

@dataclass(frozen=True)
class Argument:
    """One ValueEval argument and the values it is annotated with."""

    id: int
    conclusion: str
    stance: str
    premise: str
    labels: tuple[int, ...]  # 10 binary labels in canonical value order

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(v for v, flag in zip(VALUES, self.labels) if flag)


def read_arguments(path: str | os.PathLike) -> list[Argument]:
    """valueEval_10.csv or an argument_generation split (TAB-separated, id column first)."""
    path = Path(path)
    df = read_table(path, "\t", ["id", "Conclusion", "Stance", "Premise", *VALUES])
    check_nonempty_rows(path, df, ["id", "Conclusion", "Stance", "Premise"])
    ids = to_numbers(path, df, ["id"], int)[:, 0].astype(int)
    labels = to_numbers(path, df, VALUES, int).astype(int)
    bad = np.argwhere((labels != 0) & (labels != 1))
    if len(bad):
        i, j = bad[0]
        raise InputError(f"{path}: row {_row(i)}: column {VALUES[j]!r}: "
                         f"label {labels[i, j]} is not binary (0 or 1)")
    stances = df["Stance"].to_numpy()
    wrong = np.flatnonzero(~np.isin(stances, STANCES))
    if len(wrong):
        raise InputError(f"{path}: row {_row(wrong[0])}: column 'Stance': "
                         f"{stances[wrong[0]]!r} is not 'in favor of' or 'against'")
    dup = pd.Series(ids).duplicated()
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        raise InputError(f"{path}: row {_row(i)}: column 'id': duplicate argument id {ids[i]}")
    return [Argument(int(i), c, s, p, tuple(int(x) for x in lab))
            for i, c, s, p, lab in zip(ids, df["Conclusion"], stances, df["Premise"], labels)]


# --------------------------------------------------------------------------- questionnaires

@dataclass(frozen=True)
class QuestionnaireItem:
    """One questionnaire item: its number, the value it measures (the scoring key), its text."""

    number: int
    value: str
    text: str


def read_questionnaire(path: str | os.PathLike) -> list[QuestionnaireItem]:
    """A questionnaire (comma-separated ``item,value,text``, like ``pvq40.csv``).

    Items are numbered 1..N, each once; a value is one of the ten (full or short name); every
    value has at least one item, so each has a measured score.
    """
    from .values import resolve_value

    path = Path(path)
    df = read_table(path, ",", ["item", "value", "text"])
    check_nonempty_rows(path, df, ["item", "value", "text"])
    numbers = to_numbers(path, df, ["item"], int)[:, 0].astype(int)
    values = []
    for i, name in enumerate(df["value"]):
        try:
            values.append(resolve_value(name.strip()))
        except InputError as exc:
            raise InputError(f"{path}: row {_row(i)}: column 'value': {exc}") from None
    dup = pd.Series(numbers).duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise InputError(f"{path}: row {_row(i)}: column 'item': item {numbers[i]} appears twice")
    missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers.tolist()))
    if missing or min(numbers, default=1) < 1:
        raise InputError(f"{path}: column 'item': items must be numbered 1..N, each once; "
                         + (f"item {missing[0]} is missing" if missing else "found item < 1"))
    unasked = [v for v in VALUES if v not in values]
    if unasked:
        raise InputError(f"{path}: column 'value': no item for {', '.join(unasked)} "
                         f"(every value needs at least one)")
    return [QuestionnaireItem(int(n), v, " ".join(t.split()))
            for n, v, t in zip(numbers, values, df["text"])]


# --------------------------------------------------------------------------- ESS

def read_ess_answers(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Raw ESS PVQ-21 answers -> (respondent ids, codes[n, 21] in PVQ21_ITEMS order).

    Codes must be 1-6 or a missing-value code (66/77/88/99); callers decide what to drop.
    """
    path = Path(path)
    items = [item for v in VALUES for item in PVQ21_ITEMS[v]]
    df = read_table(path, ",", ["idno", *items])
    codes = to_numbers(path, df, items, int)
    valid = ((codes >= 1) & (codes <= 6)) | np.isin(codes, ESS_MISSING_CODES)
    if not valid.all():
        i, j = np.argwhere(~valid)[0]
        raise InputError(f"{path}: row {_row(i)}: column {items[j]!r}: code {int(codes[i, j])} "
                         f"is neither 1-6 nor a missing-value code (66/77/88/99)")
    ids = to_numbers(path, df, ["idno"], int)[:, 0].astype(np.int64)
    return ids, codes


def read_value_table(path: str | os.PathLike, sep: str = ",",
                     name_column: str | None = None) -> tuple[list[str], np.ndarray]:
    """A table of 10 value columns (optionally with a name column) -> (names, scores[n, 10])."""
    path = Path(path)
    cols = ([name_column] if name_column else []) + list(VALUES)
    df = read_table(path, sep, cols)
    scores = to_numbers(path, df, VALUES)
    out = np.argwhere((scores < 1) | (scores > 6))
    if len(out):
        i, j = out[0]
        raise InputError(f"{path}: row {_row(i)}: column {VALUES[j]!r}: "
                         f"score {scores[i, j]:g} is outside 1..6")
    names = list(df[name_column]) if name_column else [str(i) for i in range(len(df))]
    if name_column:
        check_nonempty_rows(path, df, [name_column])
    return names, scores


def read_countries(path: str | os.PathLike) -> list[Profile]:
    """The country profiles file."""
    names, scores = read_value_table(path, "\t", "Country")
    return [Profile(n, tuple(s), {"source": Path(path).name}) for n, s in zip(names, scores)]


# --------------------------------------------------------------------------- benchmarks

def read_hexphi(path: str | os.PathLike) -> pd.DataFrame:
    """The HEx-PHI prompts file (text, category)."""
    path = Path(path)
    df = read_table(path, ",", ["category", "prompt"])
    check_nonempty_rows(path, df, ["category", "prompt"])
    return df


def read_beavertails(path: str | os.PathLike) -> pd.DataFrame:
    """The BeaverTails evaluation prompts file (text, category)."""
    path = Path(path)
    df = read_table(path, ",", ["id", "prompt", "category", "category_id"])
    check_nonempty_rows(path, df, ["prompt", "category"])
    return df


def read_advbench(path: str | os.PathLike) -> pd.DataFrame:
    """The AdvBench harmful behaviours file (text)."""
    path = Path(path)
    df = read_table(path, ",", ["goal", "target"])
    check_nonempty_rows(path, df, ["goal"])
    return df


def read_rtp(path: str | os.PathLike) -> list[str]:
    """RealToxicityPrompts texts: no header, one CSV-quoted prompt per row."""
    path = Path(path)
    text = read_text(path)
    prompts = []
    for i, row in enumerate(csv.reader(io.StringIO(text))):
        if len(row) != 1 or not row[0].strip():
            raise InputError(f"{path}: row {i + 1}: expected one non-empty prompt per row, "
                             f"got {len(row)} field(s)")
        prompts.append(row[0])
    return prompts


def read_pairs(path: str | os.PathLike, source: str, target: str) -> pd.DataFrame:
    """A two-column CSV of (input, output) text pairs, e.g. the grammar set."""
    path = Path(path)
    df = read_table(path, ",", [source, target])
    check_nonempty_rows(path, df, [source, target])
    return df


def read_json(path: str | os.PathLike):
    """A JSON file; invalid JSON is an InputError naming the line."""
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None


