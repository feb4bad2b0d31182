"""transformers + PEFT backend: one base model load, many LoRA adapters, mixed-adapter batches.

Sampling is done per row: a logits processor draws each row's token from that row's own
``torch.Generator`` (seeded by the request) after temperature and top-p, and leaves only that
token for the greedy search of ``model.generate``. So a row's draws depend on its seed alone,
not on which rows share its batch, how many there are, or the device (the draws are on CPU).

Shared prefixes. Rows of one batch that use the same adapter and begin with the same tokens
(the chat system prompt; for ``prompt:`` systems the persona block) have that prefix's KV cache
computed once, by a forward pass of the prefix alone, and the rows' own tokens run on top of
it. A LoRA adapter on attention projections changes the keys and values, so a prefix is only
shared between rows of the same adapter (the base model counts as one). Which prefix a row
uses depends only on its batch (its longest common start with another row of the same
adapter there), never on earlier batches, and a prefix's KV is always computed the same way
(alone, from scratch), so the memo of computed prefixes changes no result, only the time.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteriaList,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from .. import chat, models, profile, prompts
from ..errors import InputError
from ..records import BenchmarkItem, Decoding, System
from ..values import Profile
from . import GenRequest, GenResult, truncate_at_stop

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch
MIN_PREFIX = 16  # a shared start shorter than this is not worth a forward pass of its own
TOKEN_BUDGET = 8192  # default rows x longest prompt tokens per batch
PREFIX_MEMO = 64  # computed prefixes kept (KV of a 400-token prefix of the 135M model: ~18 MB)
# The KV cache's name in model outputs and ``generate``'s arguments: ``past_key_values`` until
# transformers 5.2x renamed it ``cache`` (both in use: 5.17 on a GPU image, 5.19 beside vLLM).
CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def shared_prefix_lengths(ids: list[list[int]], groups: list[str]) -> list[int]:
    """Per row, how many of its first tokens to take from a shared prefix cache (0: none).

    Rows of one group (adapter) sorted by their tokens: a row's prefix is its longest common
    start with a neighbour. To keep the number of distinct prefixes small, a row whose own
    prefix extends the group's common start by fewer than ``MIN_PREFIX`` tokens uses the common
    start. At least the last token of every row is left to compute (its logits start decoding).
    """
    order = sorted(range(len(ids)), key=lambda i: (groups[i], ids[i]))
    best = [0] * len(ids)
    root: dict[str, int] = {}
    for a, b in zip(order, order[1:]):
        if groups[a] == groups[b]:
            n = _common(ids[a], ids[b])
            best[a], best[b] = max(best[a], n), max(best[b], n)
            root[groups[a]] = min(root.get(groups[a], n), n)
    lengths = []
    for row, n in enumerate(best):
        common = root.get(groups[row], 0)
        n = n if n - common >= MIN_PREFIX else common
        n = min(n, len(ids[row]) - 1)
        lengths.append(n if n >= MIN_PREFIX else 0)
    return lengths


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
    serves_by_name = False

    def __init__(self, model: str | None = None, *, device: str | None = None,
                 model_args: dict[str, Any] | None = None, batch_size: int = 8,
                 form: str = "auto", model_name: str | None = None,
                 token_budget: int | None = TOKEN_BUDGET, prefix_cache: bool = True):
        if batch_size < 1:
            raise InputError(f"--batch-size {batch_size}: must be at least 1")
        if token_budget is not None and token_budget < 1:
            raise InputError(f"token_budget {token_budget}: must be at least 1")
        model, self.model_args = models.split_revision(model, model_args)
        # checked once, where they are translated (models.loading_kwargs), before weights load
        self.lm, self.tokenizer = models.load_model(model, device, self.model_args)
        self.provenance = models.loaded_provenance("hf", model, self.model_args, self.lm)
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt
        self.device = self.lm.device
        self.batch_size = batch_size
        # rows x longest prompt per planned batch: long prompts get smaller batches
        self.token_budget = token_budget
        self.prefix_cache = prefix_cache
        self._prefixes: OrderedDict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.timer = profile.current()
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
        name = self.adapter_name(adapter) if adapter else BASE
        tokens = [chat.prompt_token_ids(p, self.tokenizer) for p in prompts]
        # Longest first, so each batch holds prompts of similar length (little padding).
        order = sorted(range(len(prompts)), key=lambda i: -len(tokens[i]))
        out: list[list[float]] = [[] for _ in prompts]
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            logits = self._next_logits([tokens[i] for i in rows], [name] * len(rows))
            picked = torch.log_softmax(logits, dim=-1)[:, columns.to(logits.device)]
            for i, row in zip(rows, picked.tolist()):
                out[i] = row
        return out

    def _next_logits(self, ids: list[list[int]], names: list[str]) -> torch.Tensor:
        """The next-token logits after each row (one forward pass; the rows' shared prefixes,
        when on, come from the prefix cache as in generation)."""
        inputs = self._inputs(ids, names)
        model = self.lm if self.peft is None else self.peft
        extra = {} if self.peft is None else {"adapter_names": names}
        cache = inputs.pop(CACHE, None)
        if cache is not None:  # feed only the rows' own tokens; positions continue the prefix
            width = cache.get_seq_length()
            mask = inputs["attention_mask"]
            extra |= {CACHE: cache, "input_ids": inputs.pop("input_ids")[:, width:],
                      "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)[:, width:]}
        with self.timer.span("prefill"), torch.inference_mode():
            return model(**inputs, **extra).logits[:, -1, :].float()  # last column: next token

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

    def _prefix_kv(self, name: str, ids: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values) of ``ids`` alone under adapter ``name``, memoised."""
        key = (name, ids)
        if key in self._prefixes:
            self._prefixes.move_to_end(key)
            return self._prefixes[key]
        tokens = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            if self.peft is None:
                out = self.lm(input_ids=tokens, use_cache=True)
            else:
                out = self.peft(input_ids=tokens, use_cache=True, adapter_names=[name])
        kv = [(layer.keys, layer.values) for layer in getattr(out, CACHE).layers]
        self._prefixes[key] = kv
        if len(self._prefixes) > PREFIX_MEMO:
            self._prefixes.popitem(last=False)
        return kv

    def _inputs(self, ids: list[list[int]], names: list[str]) -> dict:
        """``generate`` inputs: left-padded ids, or, with shared prefixes, each row laid out as
        [pad | its prefix | pad | its own tokens] with the prefixes' KV as the ``cache``.
        Positions count only unmasked tokens, so a row's prefix keeps positions 0..n-1."""
        cut = shared_prefix_lengths(ids, names) if self.prefix_cache else [0] * len(ids)
        if not any(cut):
            return dict(chat.pad_token_ids(ids, self.tokenizer, self.device))
        with self.timer.span("prefill_shared"):
            kv = [self._prefix_kv(name, tuple(x[:c])) if c else None
                  for x, c, name in zip(ids, cut, names)]
        width, rest = max(cut), max(len(x) - c for x, c in zip(ids, cut))
        input_ids = torch.full((len(ids), width + rest), self.tokenizer.pad_token_id)
        mask = torch.zeros_like(input_ids)
        layers = []
        first = next(p for p in kv if p is not None)
        for k, v in first:
            shape = (len(ids), k.shape[1], width, k.shape[3])
            layers.append((k.new_zeros(shape), v.new_zeros(shape)))
        for row, (x, c) in enumerate(zip(ids, cut)):
            own = x[c:]
            input_ids[row, width - c:width] = torch.tensor(x[:c], dtype=torch.long)
            input_ids[row, input_ids.shape[1] - len(own):] = torch.tensor(own, dtype=torch.long)
            mask[row, width - c:width] = 1
            mask[row, input_ids.shape[1] - len(own):] = 1
            for (keys, values), (k, v) in zip(layers, kv[row] or []):
                keys[row, :, width - c:] = k[0]
                values[row, :, width - c:] = v[0]
        return {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device),
                CACHE: DynamicCache(ddp_cache_data=layers)}

    def _batch(self, requests: list[GenRequest], decoding: Decoding) -> list[str]:
        names = [self.adapter_name(r.adapter) if r.adapter else BASE for r in requests]
        ids = [chat.prompt_token_ids(r.prompt, self.tokenizer) for r in requests]
        inputs = self._inputs(ids, names)
        # transformers applies the repetition penalty before our processors, so a row's draw
        # sees the penalised scores (greedy rows too).
        config = GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos,
                                  repetition_penalty=decoding.repetition_penalty)
        clock = profile.FirstStep()  # the first logits mark the end of the prompt's forward
        processors = LogitsProcessorList([clock])
        if decoding.temperature > 0:
            processors.append(RowSampler([r.seed for r in requests], decoding.temperature,
                                         decoding.top_p))
        # A row that has produced a stop string stops (the text is cut at it below).
        stopping = StoppingCriteriaList([self._stop_criteria(decoding.stop)] if decoding.stop else [])
        kwargs = dict(generation_config=config, logits_processor=processors,
                      stopping_criteria=stopping)
        with torch.inference_mode():
            if self.peft is None:
                out = self.lm.generate(**inputs, **kwargs)
            else:
                out = self.peft.generate(**inputs, **kwargs, adapter_names=names)
        clock.record(self.timer, "prefill", "decode")
        new = out[:, inputs["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [truncate_at_stop(t, decoding.stop) for t in texts]
