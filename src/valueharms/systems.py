"""Naming a system under test: ``vanilla``, ``vim:<target>``, ``prompt:<target>``,
``benign:<dataset>``, each optionally ``+<mitigation>``.

A key resolves to a :class:`~valueharms.records.System`: the base model plus a LoRA adapter
(vim, benign) or a prompt (prompt), and the mitigation text appended to each question.
Keys are normalised so that equal systems get equal strings (``VIM:Hed+value:hed`` ->
``vim:Hed+value:Hedonism``; ``+none`` is dropped), because the key names every output row.
"""
from __future__ import annotations

from pathlib import Path

from . import targets
from .config import BENIGN_DATASETS
from .errors import InputError
from .records import System
from .values import SHORT, Profile, resolve_value

KINDS = ("vanilla", "vim", "prompt", "benign")
MITIGATIONS = ("none", "safety", "value", "dual")
ADAPTER_KINDS = ("vim", "benign")  # the kinds whose model is the base model plus a LoRA adapter

_ALLOWED = (f"vanilla, vim:<target>, prompt:<target> or benign:<{'|'.join(BENIGN_DATASETS)}>, "
            f"optionally followed by +none, +safety, +value:<Value> or +dual:<Value>")


def parse_mitigation(text: str) -> str:
    """``none``, ``safety``, ``value:<Value>`` or ``dual:<Value>``, the value by full or short name."""
    kind, sep, value = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind in ("none", "safety") and not sep:
        return kind
    if kind in ("value", "dual") and value.strip():
        value = value.strip()
        # short names in any case too (``hed``), so hand-typed keys normalise the same way
        short = {s.lower(): s for s in SHORT}.get(value.lower(), value)
        return f"{kind}:{resolve_value(short)}"
    raise InputError(f"mitigation {text!r}: expected none, safety, value:<Value> or dual:<Value>")


def parse_system(key: str, adapter: str | Path | None = None, *, data_dir: str | None = None,
                 extra: list[Profile] | None = None) -> System:
    """The system named by ``key``; targets are checked against the known profiles (and ``extra``).

    ``adapter`` is the LoRA directory of a vim or benign system; it may name a directory that
    a study has yet to train, so it is only checked when loaded (:func:`require_adapter`).
    """
    base, plus, mitigation = key.strip().partition("+")
    kind, colon, arg = base.strip().partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind not in KINDS or (kind == "vanilla") == bool(colon) or (colon and not arg):
        raise InputError(f"system {key!r}: expected {_ALLOWED}")
    if plus and not mitigation.strip():
        raise InputError(f"system {key!r}: nothing after '+'; expected {_ALLOWED}")
    try:
        mitigation = parse_mitigation(mitigation) if plus else "none"
    except InputError as exc:
        raise InputError(f"system {key!r}: {exc}") from None
    target = dataset = None
    if kind in ("vim", "prompt"):
        try:
            target = targets.find(arg, data_dir, extra).name
        except InputError as exc:
            raise InputError(f"system {key!r}: {exc}") from None
    elif kind == "benign":
        dataset = arg.lower()
        if dataset not in BENIGN_DATASETS:
            raise InputError(f"system {key!r}: unknown benign data set {arg!r}; expected one of "
                             f"{', '.join(BENIGN_DATASETS)}")
    if adapter is not None and kind not in ADAPTER_KINDS:
        raise InputError(f"system {key!r}: a {kind} system takes no adapter (got {adapter})")
    return System(key=system_key(kind, target or dataset, mitigation), kind=kind, target=target,
                  dataset=dataset, mitigation=mitigation,
                  adapter=str(adapter) if adapter is not None else None)


def system_key(kind: str, arg: str | None, mitigation: str = "none") -> str:
    """The normalised key; the inverse of :func:`parse_system` for already-valid parts."""
    base = kind if kind == "vanilla" else f"{kind}:{arg}"
    return base if mitigation == "none" else f"{base}+{mitigation}"


def adapter_path(system: System, adapters_root: str | Path) -> Path:
    """Where a study keeps this system's adapter: ``vim/<target>/stage2`` or ``benign/<dataset>``."""
    root = Path(adapters_root)
    if system.kind == "vim":
        return root / "vim" / str(system.target) / "stage2"
    if system.kind == "benign":
        return root / "benign" / str(system.dataset)
    raise InputError(f"system {system.key!r}: a {system.kind} system has no adapter")


def require_adapter(system: System) -> Path | None:
    """The adapter directory a system needs before it can generate (None for vanilla/prompt)."""
    if system.kind not in ADAPTER_KINDS:
        return None
    if not system.adapter:
        raise InputError(f"system {system.key!r}: needs a LoRA adapter directory (--adapter)")
    path = Path(system.adapter)
    if not (path / "adapter_config.json").is_file():
        raise InputError(f"system {system.key!r}: adapter {path} has no adapter_config.json "
                         f"(train it first: valueharms train {system.kind})")
    return path


def mitigation_value(system: System) -> str | None:
    """The value a value/dual mitigation asks the model to set aside."""
    kind, _, value = system.mitigation.partition(":")
    return value if kind in ("value", "dual") else None
