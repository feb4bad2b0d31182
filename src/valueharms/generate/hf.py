"""transformers + PEFT backend: one base model load, many LoRA adapters, mixed-adapter batches.

Sampling is done per row: a logits processor draws each row's token from that row's own
``torch.Generator`` (seeded by the request) after temperature and top-p, and leaves only that
token for the greedy search of ``model.generate``. So a row's draws depend on its seed alone,
not on which rows share its batch, how many there are, or the device (the draws are on CPU).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteriaList,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from .. import chat, models, prompts
from ..errors import InputError
from ..records import BenchmarkItem, Decoding, System
from ..values import Profile
from . import GenRequest, GenResult, truncate_at_stop

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class RowSampler(LogitsProcessor):
    """Sample each row with its own generator; return scores that make greedy pick the draw."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        warpers: list[Any] = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p))
        self.warpers = LogitsProcessorList(warpers)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(self.warpers(input_ids, scores.float()), dim=-1).double()
        # Exactly one uniform per row and step, drawn on CPU: inverse-CDF sampling.
        u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators])
        cdf = probs.cumsum(dim=-1)
        tokens = (cdf <= u.to(cdf.device)[:, None] * cdf[:, -1:]).sum(dim=-1)  # first token past u
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, tokens[:, None], 0.0)
        return out  # type: ignore[return-value]  # a float tensor; FloatTensor is a legacy type


class HFBackend:
    """Generate with transformers; LoRA adapters are loaded once, by directory, on first use."""

    rows_independent = False

    def __init__(self, model: str | None = None, *, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 8, form: str = "auto",
                 model_name: str | None = None):
        if batch_size < 1:
            raise InputError(f"--batch-size {batch_size}: must be at least 1")
        self.lm, self.tokenizer = models.load_model(model, device, dtype)
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt
        self.device = self.lm.device
        self.batch_size = batch_size
        self.form = form
        self.model = model_name or model or models.DEFAULT_MODEL
        self.peft: Any = None  # the PeftModel wrapping self.lm once an adapter is loaded
        self.adapters: dict[str, str] = {}  # adapter directory -> PEFT adapter name
        self._stops: dict[tuple[str, ...], StopStringCriteria] = {}  # costly to build: once each
        eos = self.lm.generation_config.eos_token_id
        self.eos = eos if eos is not None else self.tokenizer.eos_token_id

    # ------------------------------------------------------------------ interface

    def prompt(self, system: System, item: BenchmarkItem, profile: Profile | None) -> str:
        return prompts.build_prompt(system, item, self.tokenizer, profile=profile, form=self.form)

    def prompt_length(self, prompt: str) -> int:
        return len(chat.prompt_token_ids(prompt, self.tokenizer))

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        groups: dict[Decoding, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.decoding, []).append(i)
        for decoding, rows in groups.items():
            # Longest first, so each batch holds prompts of similar length (little padding).
            rows.sort(key=lambda i: -self.prompt_length(requests[i].prompt))
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start:start + self.batch_size]
                for i, text in zip(chunk, self._batch([requests[i] for i in chunk], decoding)):
                    results[i] = GenResult(text)
        return results  # type: ignore[return-value]

    def choice_logprobs(self, prompts: list[str], choices: list[str],
                        adapter: str | None = None) -> list[list[float]]:
        """Per prompt, the log-probability of each choice as the very next token (one forward
        pass per batch, no text generated). Each choice must be one token of this tokenizer
        (the digits 1-6 are for the models here); InputError otherwise."""
        ids = [self.tokenizer.encode(c, add_special_tokens=False) for c in choices]
        split = [c for c, i in zip(choices, ids) if len(i) != 1]
        if split:
            raise InputError(f"{self.model}: the tokenizer splits the answer {split[0]!r} into "
                             f"several tokens; use --method generate")
        columns = torch.tensor([i[0] for i in ids])
        model = self.lm if self.peft is None else self.peft
        name = self.adapter_name(adapter) if adapter else BASE
        # Longest first, so each batch holds prompts of similar length (little padding).
        order = sorted(range(len(prompts)), key=lambda i: -self.prompt_length(prompts[i]))
        out: list[list[float]] = [[] for _ in prompts]
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            enc = chat.encode_prompts([prompts[i] for i in rows], self.tokenizer, self.device)
            names = {} if self.peft is None else {"adapter_names": [name] * len(rows)}
            with torch.inference_mode():
                logits = model(**enc, **names).logits[:, -1, :].float()  # left padded: last = next
            picked = torch.log_softmax(logits, dim=-1)[:, columns.to(logits.device)]
            for i, row in zip(rows, picked.tolist()):
                out[i] = row
        return out

    # ------------------------------------------------------------------ adapters

    def load_adapters(self, paths: list[str]) -> None:
        for path in paths:
            self.adapter_name(path)

    def adapter_name(self, path: str) -> str:
        """Load the adapter at ``path`` (once) and return its PEFT name."""
        key = str(Path(path).resolve())
        if key in self.adapters:
            return self.adapters[key]
        if not (Path(path) / "adapter_config.json").is_file():
            raise InputError(f"adapter {path}: no adapter_config.json (not a PEFT LoRA directory)")
        from peft import PeftModel

        name = f"adapter{len(self.adapters)}"  # PEFT names may not contain dots or slashes
        try:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.lm, path, adapter_name=name)
            else:
                self.peft.load_adapter(path, adapter_name=name)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"adapter {path}: cannot load onto {self.model} "
                             f"({str(exc).splitlines()[0]})") from None
        self.peft.eval()
        self.adapters[key] = name
        return name

    # ------------------------------------------------------------------ decoding

    def _stop_criteria(self, stop: tuple[str, ...]) -> StopStringCriteria:
        if stop not in self._stops:
            self._stops[stop] = StopStringCriteria(self.tokenizer, list(stop))
        return self._stops[stop]

    def _batch(self, requests: list[GenRequest], decoding: Decoding) -> list[str]:
        names = [self.adapter_name(r.adapter) if r.adapter else BASE for r in requests]
        enc = chat.encode_prompts([r.prompt for r in requests], self.tokenizer, self.device)
        # transformers applies the repetition penalty before our processors, so a row's draw
        # sees the penalised scores (greedy rows too).
        config = GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos,
                                  repetition_penalty=decoding.repetition_penalty)
        processors = LogitsProcessorList()
        if decoding.temperature > 0:
            processors.append(RowSampler([r.seed for r in requests], decoding.temperature,
                                         decoding.top_p))
        # A row that has produced a stop string stops (the text is cut at it below).
        stopping = StoppingCriteriaList([self._stop_criteria(decoding.stop)] if decoding.stop else [])
        kwargs = dict(generation_config=config, logits_processor=processors,
                      stopping_criteria=stopping)
        with torch.inference_mode():
            if self.peft is None:
                out = self.lm.generate(**enc, **kwargs)
            else:
                out = self.peft.generate(**enc, **kwargs, adapter_names=names)
        new = out[:, enc["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [truncate_at_stop(t, decoding.stop) for t in texts]
