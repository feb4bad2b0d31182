"""vLLM backend: one engine, many LoRA adapters as per-request ``LoRARequest`` s (GPU).

vLLM is optional (``pip install valueharms[vllm]``) and imported only when the backend is
built. Everything that decides *what* is asked of vLLM (sampling settings, LoRA names and ids)
lives in plain functions here, testable without vLLM: :func:`sampling_kwargs`,
:class:`LoraTable`, :func:`engine_requests`.

Each request carries its own ``seed``, so a row's sample does not depend on the other rows
in flight; the numerics of vLLM's dynamic batching may still differ between runs by tiny
amounts, so greedy or low-temperature outputs are stable but not guaranteed bit-identical.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import chat, models, prompts
from ..errors import InputError
from ..records import BenchmarkItem, Decoding, System
from ..values import Profile
from . import GenRequest, GenResult, truncate_at_stop


def sampling_kwargs(decoding: Decoding, seed: int) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for one row (temperature 0 is greedy in vLLM)."""
    return {"n": 1, "temperature": decoding.temperature,
            "top_p": decoding.top_p if decoding.temperature > 0 else 1.0,
            "max_tokens": decoding.max_new_tokens, "seed": seed % 2 ** 63,
            "stop": list(decoding.stop), "include_stop_str_in_output": False,
            "repetition_penalty": decoding.repetition_penalty}


@dataclass(frozen=True)
class LoraSpec:
    name: str
    id: int  # vLLM wants a distinct positive integer per adapter
    path: str


class LoraTable:
    """Stable adapter ids: the first adapter seen gets 1, the next 2, ..."""

    def __init__(self) -> None:
        self._specs: dict[str, LoraSpec] = {}

    def get(self, path: str | None) -> LoraSpec | None:
        if path is None:
            return None
        key = str(Path(path).resolve())
        if key not in self._specs:
            config = Path(path) / "adapter_config.json"
            if not config.is_file():
                raise InputError(f"adapter {path}: no adapter_config.json (not a PEFT LoRA directory)")
            n = len(self._specs) + 1
            self._specs[key] = LoraSpec(f"adapter{n}", n, key)
        return self._specs[key]

    def max_rank(self) -> int:
        ranks = [json.loads((Path(s.path) / "adapter_config.json").read_text()).get("r", 8)
                 for s in self._specs.values()]
        return max(ranks, default=8)

    def __len__(self) -> int:
        return len(self._specs)


def engine_requests(requests: list[GenRequest], table: LoraTable
                    ) -> list[tuple[str, dict[str, Any], LoraSpec | None]]:
    """(prompt, sampling arguments, adapter) per request, in order."""
    return [(r.prompt, sampling_kwargs(r.decoding, r.seed), table.get(r.adapter)) for r in requests]


# The engine settings valueharms chooses unless a model arg says otherwise.
# Prefix caching: the chat system prompt and a persona block are computed once; vLLM keys
# cached blocks by LoRA too, so an adapter never reuses another's KV.
ENGINE_DEFAULTS = {"enable_lora": True, "max_loras": 8, "max_lora_rank": 64,
                   "gpu_memory_utilization": 0.85, "dtype": "auto", "enable_prefix_caching": True}


def engine_kwargs(model_args: dict[str, Any]) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments: the defaults above, overridden by the model args."""
    return {**ENGINE_DEFAULTS, **model_args}


def _engine_dtype(engine, asked: str) -> str:
    """The dtype the engine settled on (``auto`` resolves to the checkpoint's)."""
    try:
        return str(engine.llm_engine.model_config.dtype).removeprefix("torch.")
    except AttributeError:  # vLLM moved it: record what was asked for
        return asked


class VLLMBackend:
    rows_independent = True  # per-request seeds; vLLM batches dynamically anyway
    token_budget: int | None = None  # batch_size alone caps a call
    serves_by_name = False

    def __init__(self, model: str | None = None, *, batch_size: int = 256, form: str = "auto",
                 model_args: dict[str, Any] | None = None, model_name: str | None = None):
        try:
            import vllm
        except ImportError:
            raise InputError("--backend vllm: vLLM is not installed (pip install "
                             "'valueharms[vllm]', on a machine with a GPU)") from None
        self._vllm = vllm
        model, self.model_args = models.split_revision(model, model_args)
        engine = engine_kwargs(models.loading_kwargs("vllm", self.model_args))  # checks them
        self.max_lora_rank = engine["max_lora_rank"]
        self.engine = vllm.LLM(model=models.resolve(model), **engine)
        self.provenance = models.loaded_provenance(
            "vllm", model, self.model_args, dtype=_engine_dtype(self.engine, engine["dtype"]),
            device=models.default_device())
        self.tokenizer = self.engine.get_tokenizer()
        self.model = model_name or model or models.DEFAULT_MODEL
        self.batch_size = batch_size
        self.form = form
        self.loras = LoraTable()

    def prompt(self, system: System, item: BenchmarkItem, profile: Profile | None) -> str:
        return prompts.build_prompt(system, item, self.tokenizer, profile=profile, form=self.form)

    def prompt_length(self, prompt: str) -> int:
        return len(chat.prompt_token_ids(prompt, self.tokenizer))

    def load_adapters(self, paths: list[str]) -> None:
        for path in paths:
            self.loras.get(path)
        if self.loras.max_rank() > self.max_lora_rank:
            raise InputError(f"adapter rank {self.loras.max_rank()} exceeds the engine's "
                             f"max_lora_rank {self.max_lora_rank}")

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        from vllm.lora.request import LoRARequest

        parts = engine_requests(requests, self.loras)
        # The prompt goes in as the token ids training used (BOS once), so vLLM adds nothing.
        inputs = [{"prompt_token_ids": chat.prompt_token_ids(p, self.tokenizer)}
                  for p, _, _ in parts]
        params = [self._vllm.SamplingParams(**kw) for _, kw, _ in parts]
        loras = [LoRARequest(s.name, s.id, s.path) if s else None for _, _, s in parts]
        outputs = self.engine.generate(inputs, params, lora_request=loras, use_tqdm=False)
        return [GenResult(truncate_at_stop(o.outputs[0].text, r.decoding.stop))
                for o, r in zip(outputs, requests)]
