"""VIM training data written to files a person can open (``valueharms data vim``).

One folder per profile: ``stage1.jsonl``, ``stage2.jsonl`` and ``manifest.json`` (the options,
the counts per split and any warnings).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import VimDataOptions
from ..errors import InputError
from ..files import atomic_dir, atomic_write_text
from ..values import Profile
from . import vim_data


@dataclass(frozen=True)
class Written:
    """One profile's data: its folder, the stage-1 counts per polarity and split, stage-2 counts."""

    profile: str
    folder: Path
    stage1: dict[str, dict[str, int]]
    stage2: dict[str, int]

    def line(self) -> str:
        """A one-line summary for the terminal."""
        counts = ", ".join(f"{pol} {'/'.join(str(c[s]) for s in ('train', 'valid', 'test'))}"
                           for pol, c in self.stage1.items())
        return (f"{self.profile}: stage 1 {counts} (train/valid/test); stage 2 "
                f"{self.stage2['train']}/{self.stage2['valid']} (train/valid)")


def write_datasets(profiles: Sequence[Profile], out: str | os.PathLike, options: VimDataOptions,
                   *, seed: int = 42, data_dir: str | None = None, one_folder: bool = False,
                   say: Callable[[str], None] = lambda note: None) -> list[Written]:
    """Stage-1 and stage-2 examples of every profile into ``out/<profile>/`` (``out`` itself
    with ``one_folder``, for a single profile). Every input is read and checked before any
    output exists; a new ``out`` appears whole."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if not one_folder:
        for p in profiles:
            if not p.name or p.name in (".", "..") or "/" in p.name or "\\" in p.name:
                raise InputError(f"profile name {p.name!r} cannot be a folder name")
    stage1 = vim_data.build_stage1_many(
        profiles, vim_data.read_stage1_arguments(data_dir), threshold=options.threshold,
        strategy=options.strategy, seed=seed, limit=options.limit)
    items = vim_data.survey_items(data_dir, options.limit)
    settings = {**options.model_dump(), "seed": seed}

    def write(root: Path) -> list[Written]:
        written = []
        for table in stage1:
            notes = table.warnings(options.threshold, options.strategy)
            for note in notes:
                say(note)
            folder = root if one_folder else root / table.profile.name
            stage2 = vim_data.build_stage2(table.profile, items, seed)
            written.append(_write_profile(folder, table, stage2, settings, notes))
        return written

    if out.exists():  # keep what else is in the folder; each file is still replaced atomically
        return write(out)
    with atomic_dir(out) as tmp:
        done = write(tmp)
    return [Written(w.profile, out / w.folder.relative_to(tmp), w.stage1, w.stage2) for w in done]


def _write_profile(folder: Path, stage1, stage2, settings: dict, notes: list[str]) -> Written:
    counts = stage1.counts()
    n2 = {split: stage2.items.splits.count(split) for split in ("train", "valid")}
    atomic_write_text(folder / "stage1.jsonl", stage1.jsonl())
    atomic_write_text(folder / "stage2.jsonl", stage2.jsonl())
    atomic_write_text(folder / "manifest.json", json.dumps({
        "target": stage1.profile.name, "profile": stage1.profile.as_dict(), **settings,
        "stage1": counts, "stage2": n2, "warnings": notes}, indent=1))
    return Written(stage1.profile.name, folder, counts, n2)
