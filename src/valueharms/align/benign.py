"""Benign fine-tuning data (the benign baselines: 1 epoch, lr 2e-5, batch 1 x 16 accumulation,
max length 2048, loss on the output): Alpaca, Dolly, Grammar, SAMSum.

``dolly`` is the full ``databricks-dolly-15k.jsonl``; ``dolly-no-safety`` is Qi et al.'s
safety-filtered copy (``databricks-dolly-15k-no-safety.jsonl``: rows whose response has a
safety or refusal phrase removed), which the paper's code trains on.

Each loader turns one file format into :class:`~valueharms.records.Example` records (prompt =
the user's request in our own wording, completion = the reference output). The files are
found with :func:`valueharms.sources.locate` unless a path is given; every malformed row is an
InputError naming the file, row and field.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import sources
from ..chat import template
from ..config import BENIGN_DATASETS, BenignOptions, train_config
from ..errors import InputError
from ..records import Example
from .trainer import TrainResult, resolve_model, to_stderr, train_lora

DATASETS = BENIGN_DATASETS
DOLLY = ("dolly", "dolly-no-safety")  # the same format and categories
DOLLY_CATEGORIES = ("brainstorming", "classification", "closed_qa", "creative_writing",
                    "general_qa", "information_extraction", "open_qa", "summarization")
HF_SAMSUM = "Samsung/samsum"  # used only when no local file exists and the hub is reachable


@dataclass(frozen=True)
class BenignData:
    dataset: str
    source: str  # the file (or hub id) the examples came from
    train: list[Example]
    valid: list[Example]  # empty where the data set has no validation part


def _text(path: Path, row: int, record: Any, name: str, required: bool = True) -> str:
    """Field ``name`` of a JSON record as a string (InputError if missing, empty or not text)."""
    if not isinstance(record, dict):
        raise InputError(f"{path}: row {row}: expected a JSON object, got {type(record).__name__}")
    value = record.get(name, None if required else "")
    if value is None:
        raise InputError(f"{path}: row {row}: field {name!r} is missing")
    if not isinstance(value, str):
        raise InputError(f"{path}: row {row}: field {name!r} is not text")
    if required and not value.strip():
        raise InputError(f"{path}: row {row}: field {name!r} is empty")
    return value


def _request(instruction: str, context: str) -> str:
    """The user's message: the instruction, with its context appended when there is one."""
    if not context.strip():
        return instruction
    return template("benign/with_context.txt").format(instruction=instruction, context=context)


def _records(path: Path) -> list[Any]:
    """A JSON list, or JSON lines (by content: a file starting with '[' is a list)."""
    if sources.read_text(path).lstrip().startswith("["):
        return sources.read_json(path)
    return list(sources.read_jsonl(path))


def read_alpaca(path: str | os.PathLike) -> list[Example]:
    """Alpaca: a JSON list of {instruction, input (optional), output}."""
    path = Path(path)
    rows = sources.read_json(path)
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a JSON list of records")
    out = []
    for i, r in enumerate(rows, 1):
        prompt = _request(_text(path, i, r, "instruction"), _text(path, i, r, "input", False))
        out.append(Example(prompt, _text(path, i, r, "output"), {"dataset": "alpaca", "row": i}))
    return out


def read_dolly(path: str | os.PathLike, exclude_categories: Iterable[str] = (),
               dataset: str = "dolly") -> list[Example]:
    """Dolly (either file): JSON lines of {instruction, context, response, category}."""
    path = Path(path)
    excluded = check_categories(exclude_categories)
    out = []
    for i, r in enumerate(sources.read_jsonl(path), 1):
        category = _text(path, i, r, "category")
        example = Example(_request(_text(path, i, r, "instruction"), _text(path, i, r, "context", False)),
                          _text(path, i, r, "response"),
                          {"dataset": dataset, "row": i, "category": category})
        if category not in excluded:
            out.append(example)
    return out


def check_categories(names: Iterable[str]) -> set[str]:
    """The Dolly categories ``names``, checked against the known ones."""
    names = set(names)
    unknown = sorted(names - set(DOLLY_CATEGORIES))
    if unknown:
        raise InputError(f"--exclude-categories {','.join(unknown)}: not a Dolly category "
                         f"(known: {', '.join(DOLLY_CATEGORIES)})")
    return names


def read_grammar(path: str | os.PathLike) -> list[Example]:
    """Grammar pairs: a (BOM-prefixed) CSV with columns input,target."""
    path = Path(path)
    wording = template("benign/grammar.txt")
    df = sources.read_pairs(path, "input", "target")
    return [Example(wording.format(text=src), tgt, {"dataset": "grammar", "row": i})
            for i, (src, tgt) in enumerate(zip(df["input"], df["target"]), 1)]


def read_samsum(path: str | os.PathLike) -> list[Example]:
    """SAMSum: a JSON list or JSON lines of {dialogue, summary} (id optional)."""
    path = Path(path)
    return _samsum_examples(str(path), _records(path))


def _samsum_examples(where: str, rows: Sequence[Any]) -> list[Example]:
    wording = template("benign/samsum.txt")
    return [Example(wording.format(dialogue=_text(Path(where), i, r, "dialogue")),
                    _text(Path(where), i, r, "summary"), {"dataset": "samsum", "row": i})
            for i, r in enumerate(rows, 1)]


def _samsum_from_hub(missing: InputError) -> BenignData:
    """The Hugging Face copy of SAMSum; needs the optional ``datasets`` package and a network."""
    try:
        import datasets
    except ImportError:
        raise missing from None
    try:
        parts = datasets.load_dataset(HF_SAMSUM)
    except Exception as exc:  # offline, gated or moved: the local-file message says what to do
        raise InputError(f"{missing}; the Hugging Face copy {HF_SAMSUM} failed too "
                         f"({type(exc).__name__})") from None
    return BenignData("samsum", f"hf:{HF_SAMSUM}", _samsum_examples(HF_SAMSUM, list(parts["train"])),
                      _samsum_examples(HF_SAMSUM, list(parts["validation"])))


def load(dataset: str, *, data_file: str | os.PathLike | None = None,
         data_dir: str | os.PathLike | None = None, exclude_categories: Iterable[str] = (),
         limit: int | None = None) -> BenignData:
    """Train (and, for grammar, validation) examples of a benign data set; the first ``limit``."""
    if dataset not in DATASETS:
        raise InputError(f"--dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")
    exclude = list(exclude_categories)
    if exclude and dataset not in DOLLY:
        raise InputError("--exclude-categories: only the dolly data set has categories")
    check_categories(exclude)
    if data_file is not None and not Path(data_file).is_file():
        raise InputError(f"--data-file {data_file}: file not found")
    try:
        path = Path(data_file) if data_file else sources.locate(dataset, data_dir)
    except InputError as missing:
        if dataset != "samsum":
            raise
        data = _samsum_from_hub(missing)
        return BenignData(data.dataset, data.source, data.train[:limit], data.valid[:limit])
    valid: list[Example] = []
    if dataset == "alpaca":
        train = read_alpaca(path)
    elif dataset in DOLLY:
        train = read_dolly(path, exclude, dataset)
    elif dataset == "samsum":
        train = read_samsum(path)
    else:
        train = read_grammar(path)
        if data_file is None:  # the shipped validation pairs belong to the shipped training file
            valid = read_grammar(sources.locate("grammar-valid", data_dir))
    return BenignData(dataset, str(path.resolve()), train[:limit], valid[:limit])


def run_benign(model: str | None, dataset: str, out_dir: str | os.PathLike,
               options: BenignOptions, *, seed: int = 42, data_dir: str | None = None,
               data_file: str | os.PathLike | None = None, exclude_categories: Iterable[str] = (),
               model_args: dict[str, Any] | None = None, progress: bool = True,
               say: Callable[[str], None] = to_stderr) -> TrainResult:
    """The benign fine-tune stage (``valueharms train benign`` and a study's benign train
    step): ``dataset`` (its file from ``data_file``, the options' ``data_files`` or the data
    directories) with ``options``; the model is checked before the data loads."""
    resolve_model(model, model_args)
    data = load(dataset, data_file=data_file or options.data_files.get(dataset),
                data_dir=data_dir, exclude_categories=exclude_categories, limit=options.limit)
    return train_lora(model, data.train, data.valid, out_dir,
                      train_config(options, seed=seed, progress=progress), model_args=model_args,
                      notes=[f"benign data set {dataset} from {data.source}"], say=say)
