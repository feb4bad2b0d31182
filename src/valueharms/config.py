"""Typed options of every stage: training, decoding, backend, alignment check and analysis.

One model per stage gives the Python API, the study file section and the CLI flags, with one
name, type, range, default and help per option.

How to add an option (one line):
  1. Add a field to the stage's model below, e.g.
         repetition_penalty: float = Field(1.0, gt=0, description="1 = off")
     The type and the constraints validate it; ``description`` is the help text.
  2. Read it where the stage runs (``options.repetition_penalty``). Nothing else: the study
     section, ``--set generation.repetition_penalty=1.1``, the JSON schema (``valueharms run
     --schema``) and, for models given to ``commands.add_options``, the CLI flag follow.
  3. Keep the default the old behaviour: a plan's step ids hash only values that differ from
     the defaults, so a new option at its default leaves finished steps finished (and a changed
     default does not redo them: give the new behaviour a new value instead).
A choice is a ``Literal`` (its values are listed in the error); a cross-field rule is a
``model_validator`` raising ``ValueError`` (or one in ``study.spec`` when it spans sections).
"""
from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from .errors import InputError
from .records import Decoding

# The choices, defined once; the modules that act on them import them from here.
PromptForm = Literal["auto", "chat", "base"]
Backend = Literal["hf", "vllm", "openai"]
AlignmentMethod = Literal["generate", "likelihood", "expected"]
Instrument = Literal["pvq40", "arguments"]  # or the path of a questionnaire file
Baseline = Literal["0.5", "background"]
ScoreRule = Literal["min", "mean", "max"]  # how an argument's values combine into its score
BenignDataset = Literal["alpaca", "dolly", "dolly-no-safety", "grammar", "samsum"]
StopPolicy = Literal["benchmark", "reference"]  # see valueharms.benchmarks.reference_stops
PROMPT_FORMS: tuple[str, ...] = get_args(PromptForm)
BACKENDS: tuple[str, ...] = get_args(Backend)
ALIGNMENT_METHODS: tuple[str, ...] = get_args(AlignmentMethod)
INSTRUMENTS: tuple[str, ...] = get_args(Instrument)
BASELINES: tuple[str, ...] = get_args(Baseline)
SCORE_RULES: tuple[str, ...] = get_args(ScoreRule)
BENIGN_DATASETS: tuple[str, ...] = get_args(BenignDataset)
STOP_POLICIES: tuple[str, ...] = get_args(StopPolicy)
ADAPTER_BACKENDS = ("hf", "vllm")  # backends that can serve LoRA adapters


def _tuple(value: Any) -> Any:
    """TOML and JSON give lists; the options keep tuples (hashable, immutable)."""
    return tuple(value) if isinstance(value, list) else value


Names = Annotated[tuple[str, ...], BeforeValidator(_tuple)]


class OptionError(InputError):
    """A bad option value. ``field`` names the option; the caller adds where it came from."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}{detail}")
        self.field, self.detail = field, detail

    def located(self, where: str) -> InputError:
        """The same error, prefixed by where the option was given (a file and section)."""
        return InputError(f"{where} {self.field}{self.detail}")


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false",
               "string": "a string", "tuple": "a list", "list": "a list", "dict": "a table",
               "model": "a table"}


def describe(error: ErrorDetails) -> tuple[str, str]:
    """(field path, rest of the line) for one pydantic error, in this project's wording."""
    loc = [str(p) for p in error["loc"]]
    kind, value = error["type"], error.get("input")
    if not loc:  # a rule across fields: its message starts with the field it blames
        field, _, rest = error["msg"].replace("Value error, ", "").partition(" ")
        return field, f" {rest}"
    field = ".".join(loc)
    if kind == "extra_forbidden":
        return field, ": unknown option"
    if kind == "missing":
        return field, ": missing"
    base = kind.split("_")[0]
    if kind.endswith(("_type", "_parsing", "_from_float")) and base in _TYPE_WORDS:
        return field, f": expected {_TYPE_WORDS[base]}, got {value!r}"
    message = error["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    shown = f" {value!r}" if isinstance(value, (str, int, float, bool)) else ""
    return field, f"{shown}: {message}"


class Options(BaseModel):
    """Base of every options model: strict types, unknown names rejected, immutable.

    Constructing one with a bad value raises :class:`OptionError` naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              validate_default=False, use_attribute_docstrings=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            field, detail = describe(exc.errors()[0])
            raise OptionError(field, detail) from None

    # Nested options are then validated by pydantic itself, so an error keeps its full path
    # (``train.epochs``) instead of being raised from the inner model without it.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def changed(self: OptionsT, **changes: Any) -> OptionsT:
        """A copy with ``changes`` applied and validated (``model_copy`` skips validation)."""
        return type(self)(**{**self.model_dump(exclude_unset=True), **changes})

    def set_values(self) -> dict[str, Any]:
        """The options that differ from their defaults, JSON-ready (what a step id hashes)."""
        return self.model_dump(mode="json", exclude_defaults=True)


OptionsT = TypeVar("OptionsT", bound=Options)  # for functions generic over an options model


def with_defaults(model: type[OptionsT], name: str, **defaults: Any) -> type[OptionsT]:
    """A subclass of ``model`` whose fields have other defaults (same types, ranges, help)."""
    from pydantic import create_model
    from pydantic.fields import FieldInfo

    fields: Any = {key: (model.model_fields[key].annotation,
                         FieldInfo.merge_field_infos(model.model_fields[key], default=value))
                   for key, value in defaults.items()}
    return create_model(name, __base__=model, **fields)


# ----------------------------------------------------------------------------- training

class TrainOptions(Options):
    """LoRA fine-tuning; the defaults are the paper's VIM ones (LoRA r 8, alpha 32, dropout
    0.1 on q/v; lr 2e-5; 5 epochs; batch 8)."""

    epochs: int = Field(5, ge=1, description="training epochs (the best one on validation is kept)")
    lr: float = Field(2e-5, gt=0, lt=1, description="learning rate")
    batch_size: int = Field(8, ge=1, description="examples per device batch")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    max_length: int = Field(512, ge=8, description="tokens per example; longer prompts lose "
                            "tokens from the left")
    lora_r: int = Field(8, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, gt=0, description="LoRA alpha (scaling = alpha / r)")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="LoRA dropout")
    target_modules: Names = Field(("q_proj", "v_proj"), min_length=1,
                                  description="module names that get LoRA weights")
    scheduler: str = Field("linear", description="transformers learning-rate schedule")
    prompt_form: PromptForm = Field("auto", description="chat template, plain text, or chat "
                                    "when the model has a template")
    save_steps: int = Field(50, ge=1, description="checkpoint interval (optimizer steps) for "
                            "resuming a killed run")
    # Off by default: measured slower on a CPU (docs/performance.md, Packed training).
    packing: bool = Field(False, description="padding-free batches: examples concatenated, "
                          "attention kept within each; pays with flash_attention_2")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the "
                                         "backward pass: less memory, about a third slower")


class TrainConfig(TrainOptions):
    """Everything :func:`valueharms.align.trainer.train_lora` needs besides the data."""

    seed: int = Field(42, ge=0, description="random seed (LoRA init, data order, dropout)")
    logging_steps: int = Field(1, ge=1, description="log the loss every N optimizer steps")
    pad_to: int | None = Field(None, description="fixed padding length; none = pad each batch "
                               "to its longest example")
    progress: bool = Field(True, description="show progress bars")

    @model_validator(mode="after")
    def _pad_fits(self) -> TrainConfig:
        if self.pad_to is not None and self.pad_to < self.max_length:
            raise ValueError(f"pad_to {self.pad_to} is below max_length {self.max_length}")
        return self


class VimDataOptions(Options):
    """Which arguments make a target's VIM data (``valueharms data vim``)."""

    limit: int | None = Field(None, ge=1, description="use only the first N arguments per stage")
    threshold: float = Field(3, ge=1, le=6, description="an argument scoring at least this "
                             "is positive")
    strategy: ScoreRule = Field("min", description="how an argument's values combine into its "
                                "score")


class VimOptions(TrainOptions, VimDataOptions):
    """A VIM run (study ``[train]``): the training options plus its data options."""


# Benign baselines, as the paper trained them: 1 epoch, batch 1 x 16 accumulation, max length 2048.
_BenignTrain = with_defaults(TrainOptions, "_BenignTrain", epochs=1, batch_size=1, grad_accum=16,
                             max_length=2048)


class BenignOptions(_BenignTrain):  # type: ignore[misc,valid-type]
    """A benign fine-tune (study ``[benign]``): training options with the benign defaults."""

    limit: int | None = Field(None, ge=1, description="use only the first N examples")
    data_files: dict[str, str] = Field(default_factory=dict, description="a data set's file, "
                                       "by data set name (default: found in the data directories)")


def train_config(options: TrainOptions, **run: Any) -> TrainConfig:
    """The trainer's config from a stage's options plus run settings (seed, progress)."""
    return TrainConfig(**options.model_dump(include=set(TrainOptions.model_fields)), **run)


BENIGN_CONFIG = train_config(BenignOptions())


# ----------------------------------------------------------------------------- generation

class DecodingOptions(Options):
    """Overrides of a benchmark's decoding; unset = the benchmark's paper setting."""

    temperature: float | None = Field(None, ge=0, description="0 = greedy")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling mass")
    max_new_tokens: int | None = Field(None, ge=1, description="tokens generated per answer")
    samples: int | None = Field(None, ge=1, description="samples per prompt")
    repetition_penalty: float | None = Field(None, gt=0, description="1 = none (the paper's "
                                             "vLLM runs); its earlier transformers runs used 1.2")

    def over(self, base: Decoding, **fixed: Any) -> Decoding:
        """``base`` (a benchmark's decoding) with the options that are set, and ``fixed``."""
        changes = self.model_dump(include=set(DecodingOptions.model_fields), exclude_none=True)
        return dataclasses.replace(base, **{**changes, **fixed})


class BenchmarkOptions(DecodingOptions):
    """Which items of a benchmark a study runs, and its decoding (``[benchmarks.NAME]``)."""

    subset: str | None = Field(None, description="e.g. holisticbiasr: all | dispreferred")
    limit: int | None = Field(None, ge=1, description="only the first N items")
    categories: Names | None = Field(None, description="only these categories")

    def decoding(self) -> DecodingOptions:
        """The decoding part of these options."""
        return DecodingOptions(**self.model_dump(include=set(DecodingOptions.model_fields),
                                                 exclude_unset=True))


class BackendOptions(Options):
    """How generations are produced (study ``[generation]``); each backend takes its own."""

    backend: Backend = Field("hf", description="hf: transformers; vllm: vLLM (GPU); openai: "
                             "an OpenAI-compatible endpoint")
    batch_size: int | None = Field(None, ge=1, description="rows per batch (hf default 8, vllm "
                                   "256, openai 4 x concurrency)")
    form: PromptForm = Field("auto", description="hf/vllm: chat template, plain text, or chat "
                             "when the model has a template")
    device: str | None = Field(None, description="hf: cpu, cuda, cuda:1 ...")
    dtype: str | None = Field(None, description="hf/vllm: float32, bfloat16 ...")
    max_loras: int = Field(8, ge=1, description="vllm: adapters served in one batch")
    base_url: str | None = Field(None, description="openai: the endpoint (default "
                                 "api.openai.com)")
    token_budget: int | None = Field(None, ge=1, description="hf: at most this many rows x "
                                     "longest prompt tokens per batch (default 8192)")
    prefix_cache: bool = Field(True, description="hf: compute prompt starts shared within a "
                               "batch (system prompt, persona) once per adapter")
    api_mode: Literal["chat", "completions"] = Field("chat", description="openai: the API")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable "
                             "holding the key")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight")
    qps: float = Field(5.0, ge=0, description="openai: requests per second (0 = unlimited)")
    attempts: int = Field(6, ge=1, description="openai: tries per request")
    backoff: float = Field(1.0, ge=0, description="openai: first retry wait in seconds "
                           "(doubles each time)")
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request")

    def for_backend(self) -> dict[str, Any]:
        """The constructor options of the chosen backend, from the options that were set (an
        unset one keeps the constructor's default, which is the option's default). Engine
        settings such as vLLM's max_loras are model args (``[study] model_args``)."""
        takes = _BACKEND_TAKES[self.backend]
        return {_CONSTRUCTOR_NAMES.get(k, k): v for k, v in self.model_dump(exclude_unset=True).items()
                if k in takes and v is not None}


_BACKEND_TAKES = {"hf": ("batch_size", "token_budget", "prefix_cache", "form", "device"),
                  "vllm": ("batch_size", "form"),
                  "openai": ("batch_size", "base_url", "api_mode", "api_key_env", "concurrency",
                             "qps", "attempts", "backoff", "timeout")}
_CONSTRUCTOR_NAMES = {"api_mode": "mode"}  # option name -> the backend constructor's


class GenerationOptions(BackendOptions):
    """The study's ``[generation]``: the backend plus how systems are grouped into steps."""

    systems_per_step: int = Field(0, ge=0, description="systems per generation step (0 = all "
                                  "in one); with vllm at most max_loras (a model arg) of them "
                                  "with adapters")
    stops: StopPolicy = Field("benchmark", description="benchmark: every system gets the "
                              "benchmark's stop strings (fair); reference: the paper's code's "
                              "per-arm stops (vanilla at newline or '.' on rtp/holisticbiasr, "
                              "prompt: at newline, adapters nowhere)")


# ----------------------------------------------------------------------------- analysis

class MetricsOptions(Options):
    """Metrics and their statistics (``valueharms metrics``, ``report``)."""

    baseline: Annotated[Baseline | tuple[Baseline, ...], BeforeValidator(_tuple)] = Field(
        "background", description="the regard bias baseline, or a list of them (one bias "
        "score each), e.g. [\"background\", \"0.5\"]")
    resamples: int = Field(9999, ge=100, description="bootstrap resamples per group")


class AnalysisOptions(MetricsOptions):
    """The study's ``[analysis]``."""

    alignment: AlignmentMethod = Field("generate", description="how the alignment check reads "
                                       "answers: generated text, the likeliest answer token, or "
                                       "the expected answer over the tokens 1-6")
    instrument: str = Field("pvq40", min_length=1, description="the alignment check's "
                                          "questionnaire: pvq40 (the paper's), arguments "
                                          "(leak-free held-out arguments) or a file "
                                          "item,value,text (relative to the study file)")


class CheckOptions(Options):
    """The alignment check (``valueharms evaluate alignment``, a study's alignment step); it
    loads the model with the hf backend."""

    instrument: str = Field("pvq40", min_length=1, description="pvq40: the 40 PVQ portraits "
                            "(the paper's instrument); arguments: held-out arguments not in the "
                            "target's stage-1 train/valid split, one question per annotated "
                            "value; or a file item,value,text (your questionnaire)")
    method: AlignmentMethod = Field("generate", description="generate: parse the number from "
                                    "a greedy reply (unclear replies are counted, not guessed); "
                                    "likelihood: the likeliest of the tokens 1-6; expected: "
                                    "their probability-weighted mean")
    limit: int | None = Field(None, ge=1, description="only the first N items (arguments: N "
                              "arguments)")
    train_limit: int | None = Field(None, ge=1, description="arguments: the limit the adapter "
                                    "was trained with (its stage-1 slice is left out too)")
    batch_size: int = Field(8, ge=1, description="prompts per batch")
    form: PromptForm = Field("auto", description="chat template, plain text, or chat when the "
                             "model has a template")
    device: str | None = Field(None, description="cpu, cuda, cuda:1 ...")
    prefix_cache: bool = Field(True, description=BackendOptions.model_fields["prefix_cache"]
                               .description)

    def backend(self) -> BackendOptions:
        """The hf backend's options of the check."""
        return BackendOptions(backend="hf", batch_size=self.batch_size, form=self.form,
                              device=self.device, prefix_cache=self.prefix_cache)


def locate(where: str, build: Any, *args: Any, **kwargs: Any) -> Any:
    """``build(*args, **kwargs)``, with an option error prefixed by ``where``."""
    try:
        return build(*args, **kwargs)
    except OptionError as exc:
        raise exc.located(where) from None
