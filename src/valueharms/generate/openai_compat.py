"""Any OpenAI-compatible endpoint (OpenAI, vLLM's server, llama.cpp, ...) with the official client.

Requests run concurrently on a bounded thread pool and go through the toolkit's one retrying,
rate-limited client (:mod:`valueharms.score.client`): 429, 5xx, timeouts and broken bodies are
retried with exponential backoff (``Retry-After`` honoured); a request that never succeeds comes
back as a failed :class:`GenResult`, which the runner records as failed, never as text.

``mode="chat"`` sends the user message (the prompt before any chat template: the server
applies its own); ``mode="completions"`` sends the plain prompt to be continued.
The key is read from the environment variable named by ``api_key_env`` and is never written.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import prompts
from ..errors import InputError
from ..records import BenchmarkItem, System
from ..remote import Failed, Permanent, Policy, RateLimiter, Stats, Transient, call
from ..values import Profile
from . import GenRequest, GenResult, truncate_at_stop

MODES = ("chat", "completions")
OPENAI_URL = "https://api.openai.com/v1"


class OpenAIBackend:
    rows_independent = True  # each request is its own HTTP call
    token_budget: int | None = None  # batch_size alone caps a call
    serves_by_name = True  # `vllm serve --lora-modules NAME=PATH`: ask for model NAME

    def __init__(self, model: str | None, *, base_url: str | None = None, mode: str = "chat",
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8, qps: float = 5.0,
                 attempts: int = 6, backoff: float = 1.0, max_backoff: float = 60.0,
                 timeout: float = 60.0, batch_size: int | None = None):
        import openai

        if not model:
            raise InputError("--model: the openai backend needs the served model's name")
        if mode not in MODES:
            raise InputError(f"--api-mode {mode!r}: expected one of {', '.join(MODES)}")
        if concurrency < 1:
            raise InputError(f"--concurrency {concurrency}: must be at least 1")
        key = os.environ.get(api_key_env)
        if not key and base_url is None:
            raise InputError(f"--backend openai: ${api_key_env} is not set (a local server without "
                             f"keys needs only --base-url)")
        self._key = key
        self.base_url = base_url or OPENAI_URL
        self.mode = mode
        self.model = model
        self.concurrency = concurrency
        self.batch_size = batch_size or 4 * concurrency
        self.policy = Policy(attempts=attempts, backoff=backoff, max_backoff=max_backoff,
                             timeout=timeout, qps=qps, concurrency=concurrency)
        self.limiter = RateLimiter(qps)
        self.stats = Stats()
        # Retries are the shared client's (paced, counted), so the openai client makes none.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key or "no-key",
                                    max_retries=0, timeout=timeout)
        self.provenance = {"backend": "openai", "base_url": self.base_url,
                           "model": {"id": model}, "mode": mode}

    def prompt(self, system: System, item: BenchmarkItem, profile: Profile | None) -> str:
        if self.mode == "chat":
            return prompts.question_text(system, item, profile)
        return prompts.build_prompt(system, item, None, profile=profile, form="base")

    def prompt_length(self, prompt: str) -> int:
        return len(prompt)

    def load_adapters(self, paths: list[str]) -> None:
        if paths:
            raise InputError(f"--backend openai: loads no adapter folders; adapter {paths[0]} "
                             f"needs --backend hf or vllm, or serve it and name the system "
                             f"adapter:<served name>=<path>")

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, requests))

    def _one(self, request: GenRequest) -> GenResult:
        try:
            text, served = call(lambda: self._request(request), self.policy, self.limiter,
                                self.stats, secrets=(self._key,))
        except Failed as exc:
            return GenResult(None, f"{exc} ({exc.attempts} attempts)")
        return GenResult(truncate_at_stop(text, request.decoding.stop), provenance=served)

    def _request(self, request: GenRequest) -> tuple[str, dict]:
        """The reply's text, and the model name and system_fingerprint the server returned."""
        import openai

        d = request.decoding
        common: dict[str, Any] = dict(
            model=request.served_model or self.model, temperature=d.temperature, top_p=d.top_p,
            max_tokens=d.max_new_tokens, seed=request.seed % 2 ** 31, stop=list(d.stop) or None)
        if d.repetition_penalty != 1.0:  # not an OpenAI parameter; vLLM's server reads it
            common["extra_body"] = {"repetition_penalty": d.repetition_penalty}
        try:
            if self.mode == "chat":
                reply = self.client.chat.completions.create(
                    messages=[{"role": "user", "content": request.prompt}], **common)
                choices = getattr(reply, "choices", None)
                text = choices[0].message.content if choices and choices[0].message else None
            else:
                reply = self.client.completions.create(prompt=request.prompt, **common)
                choices = getattr(reply, "choices", None)
                text = choices[0].text if choices else None
        except openai.APIStatusError as exc:
            message = f"HTTP {exc.status_code}: {' '.join(str(exc.message).split())[:300]}"
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
                raise Transient(message, retry_after=_retry_after(exc.response)) from None
            raise Permanent(message) from None
        except (openai.APIConnectionError, openai.APIResponseValidationError, ValueError) as exc:
            # APITimeoutError is an APIConnectionError; a broken JSON body is a ValueError.
            raise Transient(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None
        if not isinstance(text, str):
            raise Transient(f"reply without text: {str(reply)[:200]}")
        return text, {"served_model": getattr(reply, "model", None),
                      "system_fingerprint": getattr(reply, "system_fingerprint", None)}


def _retry_after(response) -> float | None:
    try:
        return float(response.headers.get("retry-after"))
    except (AttributeError, TypeError, ValueError):
        return None
