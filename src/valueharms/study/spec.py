"""The study file: parsed into a typed Study and validated before any work starts.

Each section is a typed options model (:mod:`valueharms.config`); a bad value, an unknown key
or a rule across sections stops the load with one line naming the file, ``[section]`` and key.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import Field

from .. import benchmarks as benchmark_registry
from .. import sources, targets
from ..config import (
    ADAPTER_BACKENDS,
    BENIGN_DATASETS,
    INSTRUMENTS,
    AnalysisOptions,
    BenchmarkOptions,
    BenignOptions,
    DecodingOptions,
    GenerationOptions,
    Names,
    OptionError,
    Options,
    VimOptions,
)
from ..errors import InputError
from ..measures import MEASURES
from ..systems import SystemKey, parse_mitigation
from ..values import Profile


class StudySection(Options):
    """``[study]``: what is studied and where the results go."""

    name: str | None = Field(None, description="the study's name (default: the file's stem)")
    out: str = Field(description="output directory, relative to the study file")
    model: str = Field("default", description="Hugging Face id or path of the base model "
                       "(default: the embedded model)")
    models: Names = Field((), description="several base models instead of model: the study "
                          "runs once per model, each into OUT/<model's last path part>")
    seed: int = Field(42, ge=0, description="seed of every step")
    data_dir: str | None = Field(None, description="directory with the data files (searched "
                                 "before $VALUEHARMS_DATA, ./data and ../shared/data)")
    device: str | None = Field(None, description="hf: cpu, cuda, cuda:1 ...")
    threads: int | None = Field(None, ge=1, description="CPU threads of every step (torch, "
                                "OpenMP); default: what the process running `valueharms "
                                "run` has (torch's default, or $OMP_NUM_THREADS), on Ray "
                                "too. CPU results depend on it")
    model_args: dict[str, Any] = Field(default_factory=dict, description="model loading "
                                       "options, as --model-arg (e.g. dtype, revision, "
                                       "max_loras); each backend takes the keys it knows")


class TargetsSection(Options):
    """``[targets]``: the value profiles to align to."""

    names: Names = Field((), description="profile names (see `valueharms targets list`)")
    sets: Names = Field((), description="named sets of profiles, e.g. paper")
    file: str | None = Field(None, description="your own profiles (.csv/.json/.toml)")


class SystemsSection(Options):
    """``[systems]``: the systems under test."""

    methods: Names = Field(("vanilla",), description="vanilla, prompt, vim, benign:<dataset>")
    mitigations: Names = Field(("none",), description="none, safety, safety-strict, "
                               "value:<Value>, dual:<Value>")
    adapters: dict[str, str] = Field(default_factory=dict, description="your own LoRA "
                                     "adapters as systems adapter:<name>: name = local path "
                                     "(relative to the study file) or hub id")


class RaySection(Options):
    """``[ray]``: resources of the Ray executor."""

    gpus: dict[str, float] = Field(default_factory=dict, description="GPUs per step of a "
                                   "kind, e.g. {train = 1, generate = 2} (default: 1 for "
                                   "train, generate and alignment when the cluster has GPUs)")


class StudyFile(Options):
    """A study file, one table per section (``valueharms run --schema`` prints its schema)."""

    study: StudySection
    targets: TargetsSection = TargetsSection()
    systems: SystemsSection = SystemsSection()
    train: VimOptions = VimOptions()
    benign: BenignOptions = BenignOptions()
    benchmarks: dict[str, BenchmarkOptions] = Field(default_factory=dict,
                                                    description="a table per benchmark")
    scorers: dict[str, str] = Field(default_factory=dict,
                                    description="the scorer of each benchmark")
    scorer_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="a table per scorer: its constructor options")
    decoding: DecodingOptions = DecodingOptions()
    generation: GenerationOptions = GenerationOptions()
    analysis: AnalysisOptions = AnalysisOptions()
    ray: RaySection = RaySection()


PER_TARGET = ("vim", "prompt")  # methods that give one system per target
_TABLES_OF_TABLES = ("benchmarks", "scorer_options")


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
    train: VimOptions
    benign: BenignOptions
    benchmarks: dict[str, BenchmarkOptions]
    scorers: dict[str, str]
    scorer_options: dict[str, dict[str, Any]]
    decoding: DecodingOptions
    generation: GenerationOptions
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    models: tuple[str, ...] = ()  # [study] models: :func:`load_all` makes one study of each
    model_args: dict[str, Any] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)  # name -> local path or hub id
    ray: RaySection = field(default_factory=RaySection)
    threads: int | None = None  # [study] threads; None: the driver's (execute.step_threads)
    notes: tuple[str, ...] = ()  # said once when a run starts (e.g. a deprecated scorer name)

    def system_keys(self) -> list[str]:
        """Every system under test, mitigations included, in a stable order."""
        bases = []
        for method in self.methods:
            if method in PER_TARGET:
                bases += [SystemKey(method, t.name) for t in self.targets]
            else:
                bases.append(SystemKey.parse(method))
        bases += [SystemKey("adapter", name, location=location)
                  for name, location in self.adapters.items()]
        return [str(b.with_mitigation(m)) for b in bases for m in self.mitigations]

    def model_args_for(self, backend: str) -> dict[str, Any]:
        """The model args ``backend`` takes (training and the alignment check load with hf)."""
        from .. import models

        return models.args_for(backend, self.model_args)

    def fixed_systems(self) -> list[SystemKey]:
        """The methods that name one system each (vanilla, benign:<dataset>), parsed."""
        return [SystemKey.parse(m) for m in self.methods if m not in PER_TARGET]

    def required_keys(self) -> list[str]:
        """Environment variables holding the API keys the chosen scorers need."""
        from .. import score

        return sorted({env for s in self.scorers.values() if (env := score.key_env(s))})

    def missing_keys(self) -> list[str]:
        """API keys the chosen scorers need but the environment lacks."""
        return [k for k in self.required_keys() if not os.environ.get(k)]


def load(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Study:
    """Read a study file, apply ``overrides`` (``section.key=value`` each), validate it all."""
    path = Path(path)
    try:
        raw = tomllib.loads(sources.read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    for override in overrides:
        apply_override(raw, override)
    parsed = _validate(path, raw)
    s = parsed.study
    scorers, scorer_options, notes = _current_scorer_names(path, parsed)
    data_dir = s.data_dir or None
    study = Study(
        path=path, name=s.name or path.stem,
        out=(path.parent / s.out).resolve() if not Path(s.out).is_absolute() else Path(s.out),
        model=s.model, seed=s.seed, data_dir=data_dir, device=s.device,
        targets=tuple(_targets(path, parsed.targets, data_dir)),
        methods=tuple(_methods(path, parsed.systems.methods)),
        mitigations=tuple(_mitigations(path, parsed.systems.mitigations)),
        train=parsed.train, benign=parsed.benign,
        benchmarks=_benchmarks(path, parsed.benchmarks),
        scorers=scorers, scorer_options=_rubric_files(path, scorer_options),
        decoding=parsed.decoding, generation=parsed.generation,
        analysis=_analysis(path, parsed.analysis), models=s.models,
        model_args=dict(s.model_args), adapters=_adapters(path, parsed.systems.adapters),
        ray=parsed.ray, threads=s.threads, notes=notes)
    if s.models and "model" in s.model_fields_set:
        raise InputError(f"{path}: [study] model and models: give one or the other")
    _check_model_args(path, study)
    _check_ray(path, study)
    _check_scorers(path, study)
    if any(m in ("vim", "prompt") for m in study.methods) and not study.targets:
        raise InputError(f"{path}: [targets]: methods vim/prompt need at least one target")
    _check_adapters(path, study)
    return study


def load_all(path: str | os.PathLike, overrides: Sequence[str] = ()) -> list[Study]:
    """The study once per base model of ``[study] models`` (else the one study of ``load``);
    each runs into its own ``OUT/<model>`` folder and is named ``<name>-<model>``."""
    study = load(path, overrides)
    return [replace(study, model=m, models=(), name=f"{study.name}-{_slug(m)}",
                    out=study.out / _slug(m)) for m in study.models] or [study]


def _slug(model: str) -> str:
    return Path(model.rstrip("/")).name or model


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``section.key=value`` (``benchmarks.rtp.limit=3``) in a parsed study file.

    The value is read as TOML (``2``, ``"text"``, ``[1, 2]``); anything else is text.
    """
    key, eq, text = override.partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not eq or len(parts) < 2 or not all(parts):
        raise InputError(f"--set {override!r}: expected SECTION.KEY=VALUE, e.g. train.epochs=2")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    table = raw
    for part in parts[:-1]:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise InputError(f"--set {override!r}: {part} is not a table")
    table[parts[-1]] = value


def _validate(path: Path, raw: dict[str, Any]) -> StudyFile:
    """The typed study file; an error names the file, ``[section]`` and key."""
    for section, value in raw.items():
        if section not in StudyFile.model_fields:
            raise InputError(f"{path}: unknown section [{section}]; expected one of "
                             f"{', '.join(StudyFile.model_fields)}")
        if not isinstance(value, dict):
            raise InputError(f"{path}: [{section}] must be a table")
    try:
        return StudyFile(**{"study": {}, **raw})
    except OptionError as exc:
        raise _located(path, exc) from None


def _located(path: Path, exc: OptionError) -> InputError:
    """``exc`` (a field path such as ``benchmarks.rtp.limit``) as ``[section] key``."""
    parts = exc.field.split(".")
    depth = 2 if parts[0] in _TABLES_OF_TABLES else 1
    section, key = ".".join(parts[:depth]), ".".join(parts[depth:])
    if exc.detail == ": unknown option":
        model = BenchmarkOptions if parts[0] == "benchmarks" else \
            StudyFile.model_fields[parts[0]].annotation
        expected = ", ".join(sorted(model.model_fields)) if isinstance(model, type) and \
            issubclass(model, Options) else ""
        return InputError(f"{path}: [{section}] unknown key {key!r}"
                          + (f"; expected one of {expected}" if expected else ""))
    if (section, key, exc.detail) == ("study", "out", ": missing"):
        return InputError(f"{path}: [study] out: missing (the output directory)")
    return InputError(f"{path}: [{section}] {key}{exc.detail}" if key
                      else f"{path}: [{section}]{exc.detail}")


def check_data(study: Study) -> None:
    """Every data file the study reads must be findable before work starts."""
    keys = [k for b in study.benchmarks for k in benchmark_registry.get(b).files]
    if "vim" in study.methods:
        keys += ["valueeval", "arguments-train", "arguments-valid", "arguments-test"]
    if any(m in PER_TARGET for m in study.methods) and study.analysis.instrument == "pvq40":
        keys.append("pvq40")  # the alignment check's questionnaire
    for system in study.fixed_systems():
        dataset = system.dataset
        if dataset is not None:
            files = study.benign.data_files
            if dataset in files:
                if not Path(files[dataset]).is_file():
                    raise InputError(f"{study.path}: [benign] data_files.{dataset}: "
                                     f"{files[dataset]} not found")
            else:
                keys.append(dataset)
    for key in keys:
        sources.locate(key, study.data_dir)


def _targets(path: Path, spec: TargetsSection, data_dir: str | None) -> list[Profile]:
    extra = targets.read_profiles(spec.file) if spec.file else []
    out: list[Profile] = list(extra)
    for set_name in spec.sets:
        out += targets.load_set(set_name, data_dir)
    for name in spec.names:
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


def _methods(path: Path, methods: Sequence[str]) -> list[str]:
    expected = f"vanilla, prompt, vim, benign:{'|'.join(BENIGN_DATASETS)}"
    out = []
    for m in methods:
        if m in PER_TARGET:
            out.append(m)
            continue
        try:
            key = SystemKey.parse(m)
        except InputError:
            raise InputError(f"{path}: [systems] methods: {m!r} is not one of {expected}") from None
        if key.kind not in ("vanilla", "benign") or key.mitigation != "none":
            raise InputError(f"{path}: [systems] methods: {m!r} is not one of {expected}")
        out.append(str(key))
    return out


def _mitigations(path: Path, mitigations: Sequence[str]) -> list[str]:
    try:
        return [parse_mitigation(m) for m in mitigations]
    except InputError as exc:
        raise InputError(f"{path}: [systems] mitigations: {exc}") from None


def _benchmarks(path: Path, spec: dict[str, BenchmarkOptions]) -> dict[str, BenchmarkOptions]:
    known = ", ".join(benchmark_registry.BENCHMARKS)
    if not spec:
        raise InputError(f"{path}: [benchmarks]: name at least one of {known}")
    for name, options in spec.items():
        if name not in benchmark_registry.BENCHMARKS:
            raise InputError(f"{path}: [benchmarks.{name}]: unknown benchmark; expected one of "
                             f"{known}")
        subsets = benchmark_registry.get(name).subsets
        if options.subset is not None and options.subset not in subsets:
            raise InputError(f"{path}: [benchmarks.{name}] subset {options.subset!r}: expected "
                             f"one of {', '.join(subsets)}")
    return spec


def _analysis(path: Path, analysis: AnalysisOptions) -> AnalysisOptions:
    """``instrument``: pvq40, arguments, or a questionnaire file (relative to the study file,
    made absolute) that must exist."""
    if analysis.instrument in INSTRUMENTS:
        return analysis
    file = (path.parent / analysis.instrument).resolve()
    if not file.is_file():
        raise InputError(f"{path}: [analysis] instrument: {analysis.instrument} is neither "
                         f"{' nor '.join(INSTRUMENTS)} nor a questionnaire file ({file} not "
                         f"found)")
    sources.read_questionnaire(file)  # a bad row stops the study now, not at the check
    return analysis.model_copy(update={"instrument": str(file)})


def _current_scorer_names(path: Path, parsed: StudyFile):
    """[scorers] and [scorer_options] with deprecated scorer names replaced (the score steps
    then name the scorer that runs, so earlier steps' files are not continued), and a note
    for each replaced name."""
    from .. import score  # the registry; imported here to keep start-up light

    notes = tuple(dict.fromkeys(f"{path}: [scorers] {note}" for name in parsed.scorers.values()
                                if (note := score.deprecation(name))))
    return ({bench: score.canonical(name) for bench, name in parsed.scorers.items()},
            {score.canonical(name): o for name, o in parsed.scorer_options.items()}, notes)


def _check_scorers(path: Path, study: Study) -> None:
    from .. import score  # the registry; imported here to keep start-up light

    for bench in study.benchmarks:
        if bench not in study.scorers:
            raise InputError(f"{path}: [scorers] {bench}: no scorer named for this benchmark")
    for bench, scorer in study.scorers.items():
        if bench not in study.benchmarks:
            raise InputError(f"{path}: [scorers] {bench}: not a benchmark of this study")
        if scorer not in score.names():
            raise InputError(f"{path}: [scorers] {bench}: unknown scorer {scorer!r}; expected one "
                             f"of {', '.join(score.names())}")
        offered, fits = score.measures(scorer) or (), benchmark_registry.get(bench).measures
        if not any(m.kind in fits for m in offered):
            raise InputError(f"{path}: [scorers] {bench}: {scorer} gives a "
                             f"{' or '.join(m.describe() for m in offered)}, which does not fit "
                             f"{bench} (it takes {', '.join(MEASURES[k].what for k in fits)})")
    for name, options in study.scorer_options.items():
        if name not in study.scorers.values():
            raise InputError(f"{path}: [scorer_options.{name}]: no benchmark uses scorer {name!r}")
        try:
            score.check_options(name, options)
        except OptionError as exc:
            raise exc.located(f"{path}: [scorer_options.{name}]") from None


def _rubric_files(path: Path, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Judges' ``rubric`` files, relative to the study file, resolved and checked at load."""
    from ..score.judges import read_rubric

    out = {}
    for name, opts in options.items():
        if isinstance(opts.get("rubric"), str):
            rubric = Path(opts["rubric"]).expanduser()
            rubric = rubric if rubric.is_absolute() else (path.parent / rubric).resolve()
            try:
                read_rubric(rubric)
            except InputError as exc:
                raise InputError(f"{path}: [scorer_options.{name}] {exc}") from None
            opts = {**opts, "rubric": str(rubric)}
        out[name] = opts
    return out


def _adapters(path: Path, adapters: dict[str, str]) -> dict[str, str]:
    """``[systems] adapters``: each name a valid ``adapter:`` system; a local path (relative to
    the study file) must hold adapter_config.json; a hub id is fetched when generating."""
    from .. import models

    out = {}
    for name, location in adapters.items():
        local = path.parent / location
        if local.exists() or not models.looks_like_hub_id(location):
            location = str(local.resolve())
            if not (local / "adapter_config.json").is_file():
                raise InputError(f"{path}: [systems] adapters.{name}: {location} has no "
                                 f"adapter_config.json (not a PEFT LoRA folder)")
        try:
            key = SystemKey.parse(f"adapter:{name}={location}")
        except InputError as exc:
            raise InputError(f"{path}: [systems] adapters.{name}: {exc}") from None
        out[str(key.arg)] = str(key.location)
    return out


def _check_model_args(path: Path, study: Study) -> None:
    """Every model arg is taken by a backend the study loads a model with: the generation
    backend, and hf for training and the alignment check; values are checked per backend."""
    from .. import models

    used = sorted({study.generation.backend, "hf"})
    where = f"{path}: [study] model_args"
    accepted = sorted({k for b in used for k in models.BACKEND_ARGS[b]})
    for key in study.model_args:
        if key not in accepted:
            raise InputError(f"{where} {key}: not accepted by the {' or '.join(used)} backend "
                             f"(accepted: {', '.join(accepted)})")
    for backend in used:
        models.check_model_args(backend, study.model_args_for(backend), where=where)


def _check_ray(path: Path, study: Study) -> None:
    from .plan import KINDS

    for kind, gpus in study.ray.gpus.items():
        if kind not in KINDS or gpus < 0:
            raise InputError(f"{path}: [ray] gpus.{kind}: expected a step kind ("
                             f"{', '.join(KINDS)}) with a number of GPUs >= 0")


def _check_adapters(path: Path, study: Study) -> None:
    """Trained adapter systems need a backend that serves adapters (an endpoint serves
    ``adapter:`` systems under their own names); vLLM at most max_loras per step."""
    from ..generate.vllm import ENGINE_DEFAULTS

    generation = study.generation
    trained = ["vim"] if "vim" in study.methods else []
    trained += [str(k) for k in study.fixed_systems() if k.takes_adapter]
    if trained and generation.backend not in ADAPTER_BACKENDS:
        raise InputError(f"{path}: [systems] methods: {', '.join(trained)} need LoRA adapters, "
                         f"which [generation] backend {generation.backend!r} cannot serve "
                         f"(use {' or '.join(ADAPTER_BACKENDS)})")
    if generation.backend != "vllm" or not (trained or study.adapters):
        return
    max_loras = study.model_args.get("max_loras", ENGINE_DEFAULTS["max_loras"])
    keys = study.system_keys()
    chunk = generation.systems_per_step or len(keys)
    adapters = [SystemKey.parse(k) for k in keys]
    most = max(len({k.base for k in adapters[i:i + chunk] if k.takes_adapter})
               for i in range(0, len(keys), chunk))
    if most > max_loras:
        raise InputError(f"{path}: [generation] systems_per_step: a step would serve {most} "
                         f"adapters, above max_loras {max_loras} (raise [study] model_args "
                         f"max_loras or lower systems_per_step)")
