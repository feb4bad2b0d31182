"""One flat row per scored sample: what was asked, what came back, and every verdict on it.

``samples_table(run_dir)`` joins the score files under a run directory with the generations
they score and with the system's target profile, so a reader can filter and sort individual
answers with nothing but pandas: one row per (system, benchmark, prompt, sample, scorer).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .. import sources
from ..errors import InputError
from ..files import first_jsonl_record
from ..values import VALUES, Profile
from . import metrics as metrics_mod
from .stats import target_profiles
from .tables import systems_frame

GENERATION_KEY = ["system", "benchmark", "prompt_id", "sample"]
COLUMNS = ["system", "kind", "target", "dataset", "mitigation", "benchmark", "category",
           "prompt_id", "sample", "prompt", "text", "scorer", "status", "value", "label", "model",
           *VALUES]
FORMATS = (".parquet", ".csv", ".jsonl")


def _is_generation_file(path: Path) -> bool:
    first = first_jsonl_record(path)
    return first is not None and "scorer" not in first and \
        all(k in first for k in (*GENERATION_KEY, "prompt", "text"))


def load_generations(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every generation record under ``run_dir`` (files whose first record is a generation)."""
    files = [p for p in sorted(Path(run_dir).rglob("*.jsonl")) if _is_generation_file(p)]
    columns = [*GENERATION_KEY, "prompt", "text", "category", "model"]
    records = [{k: r.get(k) for k in columns} for path in files for r in sources.read_jsonl(path)]
    frame = pd.DataFrame(records, columns=columns)
    frame["prompt_id"] = frame["prompt_id"].astype(str)
    frame["sample"] = pd.to_numeric(frame["sample"]).astype("int64")
    return frame.drop_duplicates(GENERATION_KEY, keep="last")


def samples_table(run_dir: str | os.PathLike, data_dir: str | None = None,
                  profiles: list[Profile] | None = None) -> pd.DataFrame:
    """The flat samples table of a run directory (see the module docstring for its columns).

    Target values are empty for systems without a target or whose target is not known.
    """
    if not Path(run_dir).is_dir():
        raise InputError(f"RUN_DIR {run_dir}: not a directory")
    scores = metrics_mod.load_scores([run_dir])
    scores["sample"] = scores["sample"].astype("int64")
    generations = load_generations(run_dir).rename(columns={"category": "generation_category"})
    rows = scores.merge(generations, on=GENERATION_KEY, how="left")
    rows["category"] = rows["category"].fillna(rows["generation_category"])
    keys = systems_frame(rows["system"])[["system", "kind", "target", "dataset", "mitigation"]]
    rows = rows.merge(keys, on="system", how="left")
    found, _ = target_profiles(rows["target"].dropna(), data_dir, profiles)
    values = pd.DataFrame([{"target": name, **p.as_dict()} for name, p in found.items()],
                          columns=["target", *VALUES])
    rows = rows.merge(values, on="target", how="left")
    order = ["system", "benchmark", "prompt_id", "sample", "scorer"]
    return rows.sort_values(order, kind="stable")[COLUMNS].reset_index(drop=True)


def check_out(path: str | os.PathLike) -> Path:
    """``--out`` must name a file ending in one of FORMATS."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"--out {path}: expected a file ending in {', '.join(FORMATS)}")
    return path


def write_samples(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the table as Parquet, CSV or JSON lines (by extension), whole or not at all."""
    path = check_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    elif suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    os.replace(tmp, path)
    return path
