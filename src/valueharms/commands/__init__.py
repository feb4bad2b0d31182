"""CLI subcommands: each module defines ``register(subparsers)``.

Shared option helpers live here so every command spells them the same way.
"""
from __future__ import annotations

import argparse
import types
from typing import Any

from ..config import OptionError, Options, OptionsT
from ..errors import InputError


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="directory with the data files (searched before $VALUEHARMS_DATA, "
                             "./data and ../shared/data)")


def add_subcommands(parser: argparse.ArgumentParser, dest: str):
    return parser.add_subparsers(dest=dest, required=True, parser_class=type(parser))


def positive(kind: type = int, zero: bool = False):
    """An argparse type: a number of ``kind`` above 0 (or at least 0 with ``zero``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'>= 0' if zero else '> 0'}")
        return value
    return parse


def add_options(parser: argparse.ArgumentParser, model: type[Options], *, skip: tuple[str, ...] = (),
                title: str | None = None, defaults: dict | None = None) -> None:
    """One flag per field of the options ``model`` (``lora_r`` -> ``--lora-r``), with its help,
    choices and default: the CLI spells an option as the study file does.

    Flags left out stay unset, so :func:`options_from` passes only what the user gave.
    """
    group = parser.add_argument_group(title) if title else parser
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        default = (defaults or {}).get(name, info.get_default(call_default_factory=True))
        kind, choices, many = _flag_type(info.annotation)
        shown = "" if default in (None, (), {}) else f" (default: {_show(default)})"
        kwargs: dict = {"default": None, "help": f"{info.description or ''}{shown}"}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=kind, choices=choices, metavar=None if choices else name.upper())
            if many:
                kwargs["nargs"] = "+"
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, **kwargs)


def options_from(args: argparse.Namespace, model: type[OptionsT], **fixed: Any) -> OptionsT:
    """The options ``model`` built from the flags given (see :func:`add_options`) and ``fixed``;
    a bad value is an InputError naming its flag."""
    given = {name: getattr(args, name) for name in model.model_fields
             if getattr(args, name, None) is not None}
    try:
        return model(**given, **fixed)
    except OptionError as exc:
        flag = exc.field.split(".")[0].replace("_", "-")
        raise InputError(f"--{flag}{exc.detail}") from None


def _flag_type(annotation) -> tuple[type, tuple | None, bool]:
    """(argparse type, choices, several values) for a field's type."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return type(args[0]), tuple(args), False
    if origin is typing.Annotated or origin in (typing.Union, types.UnionType):
        return _flag_type(args[0])
    if origin is tuple:
        return _flag_type(args[0])[0], None, True
    return annotation, None, False


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model-arg KEY=VALUE`` (repeatable): loading options for every model-loading command."""
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        dest="model_arg",
                        help="model loading option, repeatable; hf: revision, dtype, "
                             "trust_remote_code, device_map, attn_implementation, gguf_file, "
                             "quantization (4bit|8bit, bitsandbytes); vllm: revision, dtype, "
                             "trust_remote_code, tensor_parallel_size, max_model_len, "
                             "gpu_memory_utilization, max_loras, max_lora_rank, max_cpu_loras, "
                             "enforce_eager. MODEL@REVISION also pins a revision")


def model_options(args: argparse.Namespace, backend: str = "hf") -> tuple[str | None, dict]:
    """(model, checked model args) from ``--model`` and ``--model-arg``."""
    from .. import models

    model, margs = models.split_revision(getattr(args, "model", None),
                                         models.parse_model_args(args.model_arg))
    return model, models.check_model_args(backend, margs)
