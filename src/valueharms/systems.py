"""Naming a system under test: ``vanilla``, ``vim:<target>``, ``prompt:<target>``,
``benign:<dataset>`` or ``adapter:<name>=<path or hub id>``, each optionally ``+<mitigation>``.

:class:`SystemKey` is the one parser and formatter of these strings; nothing else splits them.

Mitigations: ``safety`` is the paper's safety prompt, the opening sentences of Llama 2's
default system prompt (Touvron et al., 2023) used verbatim as the paper's code does
(JaehyeokLee-119/unintended-value-harms, src/inference_HEx-PHI.py); ``safety-strict`` is our
stronger one that names harms and asks the model to decline; ``value:<V>`` asks the model to
set value V aside; ``dual:<V>`` is ``safety`` followed by ``value:<V>``.

A key resolves to a :class:`~valueharms.records.System`: the base model plus a LoRA adapter
(vim, benign, adapter) or a prompt (prompt), and the mitigation text appended to each question.
Keys are normalised so that equal systems get equal strings (``VIM:Hed+value:hed`` ->
``vim:Hed+value:Hedonism``; ``+none`` is dropped), because the key names every output row.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import targets
from .config import BENIGN_DATASETS
from .errors import InputError
from .records import System
from .values import SHORT, Profile, resolve_value

KINDS = ("vanilla", "vim", "prompt", "benign", "adapter")
MITIGATIONS = ("none", "safety", "safety-strict", "value", "dual")
PLAIN_MITIGATIONS = ("none", "safety", "safety-strict")  # those without a value
# The kinds whose model is the base model plus a LoRA adapter.
ADAPTER_KINDS = ("vim", "benign", "adapter")
TRAINED_KINDS = ("vim", "benign")  # adapters a study trains itself

_MITIGATION_CHOICES = "none, safety, safety-strict, value:<Value> or dual:<Value>"
_ALLOWED = (f"vanilla, vim:<target>, prompt:<target>, benign:<{'|'.join(BENIGN_DATASETS)}> or "
            f"adapter:<name>=<path or hub id>, optionally followed by +{_MITIGATION_CHOICES}")


def parse_mitigation(text: str) -> str:
    """``none``, ``safety``, ``safety-strict``, ``value:<Value>`` or ``dual:<Value>``, the
    value by full or short name."""
    kind, sep, value = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind in PLAIN_MITIGATIONS and not sep:
        return kind
    if kind in ("value", "dual") and value.strip():
        value = value.strip()
        # short names in any case too (``hed``), so hand-typed keys normalise the same way
        short = {s.lower(): s for s in SHORT}.get(value.lower(), value)
        return f"{kind}:{resolve_value(short)}"
    raise InputError(f"mitigation {text!r}: expected {_MITIGATION_CHOICES}")


@dataclass(frozen=True)
class SystemKey:
    """A system key taken apart: ``kind``, its argument, the mitigation, an adapter location.

    ``arg`` is the target (vim, prompt), the data set (benign) or the adapter's name
    (adapter); ``location`` is where an ``adapter:`` system's LoRA lives (a path or hub id).
    """

    kind: str
    arg: str | None = None
    mitigation: str = "none"
    location: str | None = None

    @classmethod
    def parse(cls, text: str, *, strict: bool = True) -> SystemKey:
        """The key ``text``; ``strict=False`` takes any ``kind:arg+mitigation`` as written
        (for reading back rows of other versions or other tools), never raising."""
        text = str(text).strip()
        head, plus, mitigation = _split_mitigation(text)
        kind, colon, arg = head.partition(":")
        location = None
        if kind.strip().lower() == "adapter":
            arg, _, location = arg.partition("=")
        if not strict:
            return cls(kind, arg or None, mitigation or "none", location or None)
        kind, arg = kind.strip().lower(), arg.strip()
        if kind not in KINDS:
            raise InputError(f"system {text!r}: unknown kind {kind!r}; expected {_ALLOWED}")
        if (kind == "vanilla") == bool(colon) or (colon and not arg):
            part = "nothing may follow 'vanilla:'" if kind == "vanilla" else \
                f"'{kind}' needs its {_ARG_NAME[kind]} after ':'"
            raise InputError(f"system {text!r}: {part}; expected {_ALLOWED}")
        if plus and not mitigation.strip():
            raise InputError(f"system {text!r}: nothing after '+'; expected {_ALLOWED}")
        try:
            mitigation = parse_mitigation(mitigation) if plus else "none"
        except InputError as exc:
            raise InputError(f"system {text!r}: {exc}") from None
        if kind == "benign":
            arg = arg.lower()
            if arg not in BENIGN_DATASETS:
                raise InputError(f"system {text!r}: unknown benign data set {arg!r}; expected "
                                 f"one of {', '.join(BENIGN_DATASETS)}")
        if kind == "adapter":
            location = (location or "").strip()
            if not location or any(c in arg for c in ":=+"):
                raise InputError(f"system {text!r}: expected adapter:<name>=<path or hub id> "
                                 f"(a name without ':', '=' or '+', then its location)")
        return cls(kind, arg or None, mitigation, location)

    def __str__(self) -> str:
        base = self.base
        return base if self.mitigation == "none" else f"{base}+{self.mitigation}"

    @property
    def key(self) -> str:
        """The normalised key string."""
        return str(self)

    @property
    def base(self) -> str:
        """The key without its mitigation: ``vim:Hed``, ``adapter:mine=org/lora``."""
        if self.arg is None:
            return self.kind
        return f"{self.kind}:{self.arg}" + (f"={self.location}" if self.kind == "adapter" else "")

    @property
    def target(self) -> str | None:
        """The target profile of a vim or prompt system."""
        return self.arg if self.kind in ("vim", "prompt") else None

    @property
    def dataset(self) -> str | None:
        """The data set of a benign fine-tune."""
        return self.arg if self.kind == "benign" else None

    @property
    def strategy(self) -> str:
        """The mitigation strategy: none, safety, safety-strict, value or dual."""
        return self.mitigation.partition(":")[0]

    @property
    def mitigation_value(self) -> str | None:
        """The value a value/dual mitigation asks the model to set aside."""
        kind, _, value = self.mitigation.partition(":")
        return value if kind in ("value", "dual") else None

    @property
    def system_type(self) -> str:
        """The comparison table's row: vanilla, vim, prompt, benign:<dataset>, adapter:<name>."""
        return f"{self.kind}:{self.arg}" if self.kind in ("benign", "adapter") and self.arg \
            else self.kind

    @property
    def takes_adapter(self) -> bool:
        """True when the system is the base model plus a LoRA adapter."""
        return self.kind in ADAPTER_KINDS

    def with_mitigation(self, mitigation: str) -> SystemKey:
        """The same base system under another (already normal) mitigation."""
        return replace(self, mitigation=mitigation)

    def adapter_dir(self, trained: str | Path | None = None) -> str | None:
        """Where the adapter is: a vim run's ``stage2/`` or a benign run's folder under
        ``trained`` (the training output), an adapter system's own location; else None."""
        if self.kind == "adapter":
            return self.location
        if self.kind in TRAINED_KINDS and trained is not None:
            return str(Path(trained) / "stage2") if self.kind == "vim" else str(trained)
        return None

    def row(self) -> dict[str, str | None]:
        """The key's parts as table columns (``system`` is the key itself)."""
        return {"system": str(self), "base": self.base, "kind": self.kind,
                "target": self.target, "dataset": self.dataset, "mitigation": self.mitigation,
                "strategy": self.strategy, "system_type": self.system_type}


_ARG_NAME = {"vim": "target", "prompt": "target", "benign": "data set", "adapter": "name"}


def _split_mitigation(text: str) -> tuple[str, str, str]:
    """(base, '+', mitigation); an adapter's location may itself hold a '+', so for adapter
    keys only a last '+' followed by a mitigation kind starts the mitigation."""
    if not text.lower().startswith("adapter:"):
        return text.partition("+")
    head, plus, tail = text.rpartition("+")
    if plus and tail.strip().partition(":")[0].strip().lower() in MITIGATIONS:
        return head, plus, tail
    return text, "", ""


def parse_system(key: str, adapter: str | Path | None = None, *, data_dir: str | None = None,
                 extra: list[Profile] | None = None) -> System:
    """The system named by ``key``; targets are checked against the known profiles (and ``extra``).

    ``adapter`` is the LoRA directory of a vim or benign system; it may name a directory that
    a study has yet to train, so it is only checked when loaded (:func:`require_adapter`).
    An ``adapter:`` system's location comes from its key.
    """
    parsed = SystemKey.parse(key)
    if parsed.target is not None:
        try:
            parsed = replace(parsed, arg=targets.find(parsed.target, data_dir, extra).name)
        except InputError as exc:
            raise InputError(f"system {key!r}: {exc}") from None
    if adapter is not None and parsed.kind not in TRAINED_KINDS:
        raise InputError(f"system {key!r}: a {parsed.kind} system takes no adapter directory "
                         f"(got {adapter})")
    location = parsed.adapter_dir() if adapter is None else str(adapter)
    return System(key=str(parsed), kind=parsed.kind, target=parsed.target,
                  dataset=parsed.dataset, mitigation=parsed.mitigation, adapter=location)


def system_key(kind: str, arg: str | None, mitigation: str = "none") -> str:
    """The normalised key; the inverse of :func:`parse_system` for already-valid parts."""
    return str(SystemKey(kind, arg, mitigation))


def adapter_path(system: System | SystemKey, adapters_root: str | Path) -> Path:
    """Where a study keeps this system's adapter: ``vim/<target>/stage2`` or ``benign/<dataset>``."""
    key = system if isinstance(system, SystemKey) else SystemKey.parse(system.key)
    if key.kind not in TRAINED_KINDS:
        raise InputError(f"system {str(key)!r}: a {key.kind} system has no adapter under "
                         f"an adapters root")
    return Path(str(key.adapter_dir(Path(adapters_root) / key.kind / str(key.arg))))


def require_adapter(system: System) -> Path | None:
    """The adapter directory a system needs before it can generate (None for vanilla/prompt).

    An ``adapter:`` system's location may be a hub id; only a local folder is checked here.
    """
    if system.kind not in ADAPTER_KINDS:
        return None
    if not system.adapter:
        raise InputError(f"system {system.key!r}: needs a LoRA adapter directory (--adapter)")
    path = Path(system.adapter)
    if system.kind == "adapter" and not path.exists():
        return path  # a hub id: the backend fetches it
    if not (path / "adapter_config.json").is_file():
        raise InputError(f"system {system.key!r}: adapter {path} has no adapter_config.json "
                         f"(train it first: valueharms train {system.kind})")
    return path


def mitigation_value(system: System) -> str | None:
    """The value a value/dual mitigation asks the model to set aside."""
    return SystemKey.parse(system.key).mitigation_value
