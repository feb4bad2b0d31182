"""Named target profiles: extremes, reverses, the paper's 154, countries, user files.

The paper's ``close_X_k`` targets are the k-th nearest European Social Survey respondents to
extreme X by Jensen-Shannon divergence (natural log) between sum-normalised profiles.
"""
from __future__ import annotations

import csv
import io
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import sources
from .errors import InputError
from .values import EXTREME_MEMBERS, PVQ21_ITEMS, VALUES, Profile, extreme

CODINGS = ("raw", "importance")
SETS = ("paper", "extremes", "reverse", "countries")


def extremes() -> list[Profile]:
    """The extreme profiles: 6 on a group's values, 1 elsewhere."""
    return [Profile(name, extreme(members), {"kind": "extreme"})
            for name, members in EXTREME_MEMBERS.items()]


def reverses() -> list[Profile]:
    """The reverse profiles: 1 on a group's values, 6 elsewhere."""
    return [Profile(f"reverse_{name}", extreme(members, high=1.0, low=6.0), {"kind": "reverse"})
            for name, members in EXTREME_MEMBERS.items()]


def js_divergence(profiles: np.ndarray, target: np.ndarray) -> np.ndarray:
    """JS divergence (natural log) of each row of ``profiles`` from ``target``, both sum-normalised."""
    p = profiles / profiles.sum(axis=1, keepdims=True)
    q = np.asarray(target, dtype=np.float64) / np.sum(target)
    m = (p + q) / 2
    return 0.5 * (np.sum(p * np.log(p / m), axis=1) + np.sum(q * np.log(q / m), axis=1))


@dataclass(frozen=True)
class Respondents:
    """Per-respondent value profiles (10 columns, canonical order) and where they came from."""

    ids: np.ndarray
    scores: np.ndarray
    source: str
    coding: str


def respondents(path: str | os.PathLike, coding: str = "raw") -> Respondents:
    """Profiles from raw ESS answers (``ess.csv``) or per-respondent means (``ess_distribution.csv``).

    ``raw`` keeps the ESS numbers (1 = very much like me) and reads them as importance, as the
    paper did; ``importance`` recodes to 7 - raw so that 6 really means very important.
    """
    if coding not in CODINGS:
        raise InputError(f"--coding {coding!r}: expected one of {', '.join(CODINGS)}")
    path = Path(path)
    header = sources.read_text(path).split("\n", 1)[0]
    if "idno" in header.split(","):
        ids, codes = sources.read_ess_answers(path)
        keep = np.all(codes <= 6, axis=1)  # drop respondents with any missing-value code
        ids, codes = ids[keep], codes[keep]
        scores, start = np.empty((len(ids), len(VALUES))), 0
        for j, value in enumerate(VALUES):
            n = len(PVQ21_ITEMS[value])
            scores[:, j] = codes[:, start:start + n].mean(axis=1)
            start += n
    else:
        _, scores = sources.read_value_table(path)
        ids = np.arange(len(scores))
    if coding == "importance":
        scores = 7.0 - scores
    return Respondents(ids, scores, path.name, coding)


def nearest(pool: Respondents, neighbours: int = 10) -> list[Profile]:
    """For each extreme X: X, close_X, close_X_2 .. close_X_k (the paper's order)."""
    out = []
    for ext in extremes():
        div = js_divergence(pool.scores, np.array(ext.scores))
        # stable sort: respondents with equal divergence keep file order
        order = np.argsort(div, kind="stable")[:neighbours]
        out.append(ext)
        for rank, i in enumerate(order, 1):
            name = f"close_{ext.name}" + ("" if rank == 1 else f"_{rank}")
            out.append(Profile(name, tuple(pool.scores[i]), {
                "kind": "ess", "extreme": ext.name, "rank": rank,
                "respondent": int(pool.ids[i]), "divergence": float(div[i]),
                "source": pool.source, "coding": pool.coding}))
    return out


@lru_cache(maxsize=4)
def paper(data_dir: str | None = None) -> tuple[Profile, ...]:
    """The paper's 154 targets, ranked from the published per-respondent profiles, coding raw."""
    return tuple(nearest(respondents(sources.locate("ess-distribution", data_dir), "raw")))


def countries(data_dir: str | None = None) -> list[Profile]:
    """The country profiles (mean ESS answers per country)."""
    return sources.read_countries(sources.locate("countries", data_dir))


def read_profiles(path: str | os.PathLike) -> list[Profile]:
    """User profiles from CSV (``name`` + 10 value columns), JSON or TOML ({name: {value: score}})."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        names, scores = sources.read_value_table(path, ",", "name")
        profiles = [Profile(n, tuple(s), {"source": path.name}) for n, s in zip(names, scores)]
    elif suffix in (".json", ".toml"):
        if suffix == ".json":
            data = sources.read_json(path)
        else:
            try:
                data = tomllib.loads(sources.read_text(path))
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"{path}: invalid TOML ({exc})") from None
        if not isinstance(data, dict) or not data:
            raise InputError(f"{path}: expected a table of profiles {{name: {{value: score}}}}")
        profiles = []
        for name, scores in data.items():
            if not isinstance(scores, dict):
                raise InputError(f"{path}: profile {name!r}: expected a table of value scores")
            profiles.append(Profile.from_mapping(name, scores, {"source": path.name}))
    else:
        raise InputError(f"{path}: unknown profile file type {suffix!r}; use .csv, .json or .toml")
    _check_unique(profiles, str(path))
    return profiles


def _check_unique(profiles: list[Profile], where: str) -> None:
    seen = set()
    for p in profiles:
        if p.name in seen:
            raise InputError(f"{where}: duplicate profile name {p.name!r}")
        seen.add(p.name)


def load_set(name: str, data_dir: str | None = None) -> list[Profile]:
    """A named set (paper, extremes, reverse, countries) or a path to a profile file."""
    if name == "paper":
        return list(paper(data_dir))
    if name == "extremes":
        return extremes()
    if name == "reverse":
        return reverses()
    if name == "countries":
        return countries(data_dir)
    if Path(name).suffix.lower() in (".csv", ".json", ".toml"):
        return read_profiles(name)
    raise InputError(f"--set {name!r}: unknown set; expected one of {', '.join(SETS)} "
                     f"or a .csv/.json/.toml profile file")


def find(name: str, data_dir: str | None = None, extra: list[Profile] | None = None) -> Profile:
    """Look a target up by name: user profiles first, then extremes, reverses, paper, countries."""
    for profile in (extra or []):
        if profile.name == name:
            return profile
    for profile in [*extremes(), *reverses()]:
        if profile.name == name:
            return profile
    if name.startswith("close_"):
        for profile in paper(data_dir):
            if profile.name == name:
                return profile
    else:
        for profile in countries(data_dir):
            if profile.name == name:
                return profile
    raise InputError(f"unknown target {name!r}; see `valueharms targets list --set paper` "
                     f"(or extremes, reverse, countries)")


def profiles_csv(profiles: Sequence[Profile], extra: Sequence[str] = (),
                 digits: int | None = None) -> str:
    """Profiles in the profile-file format (name, the ten values, then ``extra`` meta columns);
    scores exactly (``repr``) unless ``digits`` rounds them."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *VALUES, *extra])
    for p in profiles:
        scores = [repr(s) if digits is None else f"{s:.{digits}f}" for s in p.scores]
        writer.writerow([p.name, *scores, *(p.meta.get(k, "") for k in extra)])
    return buf.getvalue()
