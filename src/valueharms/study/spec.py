"""The study file: parsed into a typed Study and validated before any work starts."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import sources, targets
from ..errors import InputError
from ..values import Profile, resolve_value

METHODS = ("vanilla", "prompt", "vim", "benign")
BENIGN = ("alpaca", "dolly", "grammar", "samsum")
BENCHMARK_FILES = {"rtp": ["rtp"], "hexphi": ["hexphi"], "beavertails": ["beavertails"],
                   "advbench": ["advbench"],
                   "holisticbiasr": ["holisticbias-descriptors", "holisticbias-nouns",
                                     "holisticbias-standalone_noun_phrases"]}
# Scorers that call a paid API, and the environment variable holding their key.
API_KEYS = {"perspective": "PERSPECTIVE_API_KEY", "judge-hexphi": "OPENAI_API_KEY",
            "judge-beavertails": "OPENAI_API_KEY"}

_SECTIONS = {
    "study": {"name", "out", "model", "seed", "data_dir", "device"},
    "targets": {"names", "sets", "file"},
    "systems": {"methods", "mitigations"},
    "train": {"limit", "epochs", "batch_size", "max_length", "lr", "threshold", "strategy"},
    "benign": {"limit", "epochs", "batch_size", "grad_accum", "max_length", "lr", "data_files"},
    "benchmarks": None,  # a table per benchmark, checked below
    "scorers": None,
    "scorer_options": None,
    "decoding": {"temperature", "top_p", "max_new_tokens", "samples"},
    "generation": {"backend", "batch_size", "systems_per_step", "base_url"},
    "analysis": {"baseline", "alignment"},
}
_BENCH_KEYS = {"subset", "limit", "categories", "samples", "max_new_tokens", "temperature", "top_p"}


@dataclass(frozen=True)
class Study:
    """Everything a run needs, resolved: profiles are looked up, paths are absolute."""

    path: Path
    name: str
    out: Path
    model: str
    seed: int
    data_dir: str | None
    device: str | None
    targets: tuple[Profile, ...]
    methods: tuple[str, ...]  # e.g. vanilla, prompt, vim, benign:grammar
    mitigations: tuple[str, ...]
    train: dict[str, Any]
    benign: dict[str, Any]
    benchmarks: dict[str, dict[str, Any]]
    scorers: dict[str, str]
    scorer_options: dict[str, dict[str, Any]]
    decoding: dict[str, Any]
    generation: dict[str, Any]
    analysis: dict[str, Any] = field(default_factory=dict)

    def system_keys(self) -> list[str]:
        """Every system under test, mitigations included, in a stable order."""
        bases = []
        for method in self.methods:
            if method in ("vim", "prompt"):
                bases += [f"{method}:{t.name}" for t in self.targets]
            else:
                bases.append(method)
        return [b if m == "none" else f"{b}+{m}" for b in bases for m in self.mitigations]

    def missing_keys(self) -> list[str]:
        """API keys the chosen scorers need but the environment lacks."""
        needed = {API_KEYS[s.split(":")[0]] for s in self.scorers.values()
                  if s.split(":")[0] in API_KEYS and ":local" not in s}
        return sorted(k for k in needed if not os.environ.get(k))


def load(path: str | os.PathLike) -> Study:
    path = Path(path)
    try:
        raw = tomllib.loads(sources.read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    _check_keys(path, raw)
    s = raw.get("study", {})
    if "out" not in s:
        raise InputError(f"{path}: [study] out: missing (the output directory)")
    data_dir = s.get("data_dir") or None
    study = Study(
        path=path, name=str(s.get("name", path.stem)),
        out=(path.parent / s["out"]).resolve() if not Path(s["out"]).is_absolute() else Path(s["out"]),
        model=str(s.get("model", "default")), seed=_int(path, "study", "seed", s.get("seed", 42)),
        data_dir=data_dir, device=s.get("device"),
        targets=tuple(_targets(path, raw.get("targets", {}), data_dir)),
        methods=tuple(_methods(path, raw.get("systems", {}).get("methods", ["vanilla"]))),
        mitigations=tuple(_mitigations(path, raw.get("systems", {}).get("mitigations", ["none"]))),
        train=raw.get("train", {}), benign=raw.get("benign", {}),
        benchmarks=_benchmarks(path, raw.get("benchmarks", {})),
        scorers=dict(raw.get("scorers", {})), scorer_options=dict(raw.get("scorer_options", {})),
        decoding=raw.get("decoding", {}), generation=raw.get("generation", {}),
        analysis=raw.get("analysis", {}))
    _check_scorers(path, study)
    _check_choices(path, study)
    if any(m in ("vim", "prompt") for m in study.methods) and not study.targets:
        raise InputError(f"{path}: [targets]: methods vim/prompt need at least one target")
    return study


def _check_choices(path: Path, study: Study) -> None:
    """Backend, alignment method and bias baseline: each one of the choices its module offers."""
    from ..align.check import METHODS
    from ..analyze.bias import BASELINES
    from ..generate import BACKENDS

    for section, key, value, choices in (
            ("generation", "backend", study.generation.get("backend", "hf"), BACKENDS),
            ("analysis", "alignment", study.analysis.get("alignment", "generate"), METHODS),
            ("analysis", "baseline", study.analysis.get("baseline", "background"), BASELINES)):
        if value not in choices:
            raise InputError(f"{path}: [{section}] {key} {value!r}: expected "
                             f"{' or '.join(choices)}")


def check_data(study: Study) -> None:
    """Every data file the study reads must be findable before work starts."""
    keys = [k for b in study.benchmarks for k in BENCHMARK_FILES[b]]
    if "vim" in study.methods:
        keys += ["valueeval", "arguments-train", "arguments-valid", "arguments-test"]
    for method in study.methods:
        if method.startswith("benign:"):
            dataset = method.split(":", 1)[1]
            files = study.benign.get("data_files", {})
            if dataset in files:
                if not Path(files[dataset]).is_file():
                    raise InputError(f"{study.path}: [benign] data_files.{dataset}: "
                                     f"{files[dataset]} not found")
            else:
                keys.append(dataset)
    for key in keys:
        sources.locate(key, study.data_dir)


def _check_keys(path: Path, raw: dict) -> None:
    for section, value in raw.items():
        if section not in _SECTIONS:
            raise InputError(f"{path}: unknown section [{section}]; expected one of "
                             f"{', '.join(_SECTIONS)}")
        if not isinstance(value, dict):
            raise InputError(f"{path}: [{section}] must be a table")
        allowed = _SECTIONS[section]
        for key in value:
            if allowed is not None and key not in allowed:
                raise InputError(f"{path}: [{section}] unknown key {key!r}; expected one of "
                                 f"{', '.join(sorted(allowed))}")


def _int(path: Path, section: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{path}: [{section}] {key}: expected an integer, got {value!r}")
    return value


def _targets(path: Path, spec: dict, data_dir: str | None) -> list[Profile]:
    extra = targets.read_profiles(spec["file"]) if spec.get("file") else []
    out: list[Profile] = list(extra)
    for set_name in spec.get("sets", []):
        out += targets.load_set(set_name, data_dir)
    for name in spec.get("names", []):
        try:
            out.append(targets.find(name, data_dir, extra))
        except InputError as exc:
            raise InputError(f"{path}: [targets] names: {exc}") from None
    seen, unique = set(), []
    for p in out:
        if p.name not in seen:
            seen.add(p.name)
            unique.append(p)
    return unique


def _methods(path: Path, methods: list) -> list[str]:
    for m in methods:
        kind, _, arg = str(m).partition(":")
        if kind not in METHODS or (kind == "benign") != bool(arg) or (kind == "benign" and arg not in BENIGN):
            raise InputError(f"{path}: [systems] methods: {m!r} is not one of vanilla, prompt, vim, "
                             f"benign:{'|'.join(BENIGN)}")
    return [str(m) for m in methods]


def _mitigations(path: Path, mitigations: list) -> list[str]:
    out = []
    for m in mitigations:
        kind, _, value = str(m).partition(":")
        if kind in ("none", "safety") and not value:
            out.append(kind)
        elif kind in ("value", "dual") and value:
            try:
                out.append(f"{kind}:{resolve_value(value)}")
            except InputError as exc:
                raise InputError(f"{path}: [systems] mitigations: {exc}") from None
        else:
            raise InputError(f"{path}: [systems] mitigations: {m!r}; expected none, safety, "
                             f"value:<Value> or dual:<Value>")
    return out


def _benchmarks(path: Path, spec: dict) -> dict[str, dict[str, Any]]:
    if not spec:
        raise InputError(f"{path}: [benchmarks]: name at least one of {', '.join(BENCHMARK_FILES)}")
    for name, options in spec.items():
        if name not in BENCHMARK_FILES:
            raise InputError(f"{path}: [benchmarks.{name}]: unknown benchmark; expected one of "
                             f"{', '.join(BENCHMARK_FILES)}")
        unknown = set(options) - _BENCH_KEYS
        if unknown:
            raise InputError(f"{path}: [benchmarks.{name}] unknown key {sorted(unknown)[0]!r}; "
                             f"expected one of {', '.join(sorted(_BENCH_KEYS))}")
    return spec


def _check_scorers(path: Path, study: Study) -> None:
    from .. import score  # the registry; imported here to keep start-up light

    for bench in study.benchmarks:
        if bench not in study.scorers:
            raise InputError(f"{path}: [scorers] {bench}: no scorer named for this benchmark")
    for bench, scorer in study.scorers.items():
        if bench not in study.benchmarks:
            raise InputError(f"{path}: [scorers] {bench}: not a benchmark of this study")
        try:
            accepted = score.scorer_options(scorer)
        except InputError:
            raise InputError(f"{path}: [scorers] {bench}: unknown scorer {scorer!r}; expected one "
                             f"of {', '.join(sorted(score._REGISTRY))}") from None
        for option in study.scorer_options.get(scorer, {}):
            if option not in accepted:
                raise InputError(f"{path}: [scorer_options.{scorer}] {option}: does not apply to "
                                 f"{scorer} (accepted: {', '.join(accepted) or 'none'})")
    for name in study.scorer_options:
        if name not in study.scorers.values():
            raise InputError(f"{path}: [scorer_options.{name}]: no benchmark uses scorer {name!r}")
