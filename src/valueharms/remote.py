"""The one retrying, rate-limited way to call a remote service, for generation and scoring.

Every remote call (Perspective, an OpenAI-compatible judge or generation endpoint) runs
through :func:`call` with a
:class:`Policy`: a shared :class:`RateLimiter` spaces the requests, transient faults (429,
5xx, timeouts, cut or malformed bodies) are retried with exponential backoff, and a call that
never succeeds raises :class:`Failed`, which the runner records as status ``failed`` (never a
number). A rate-limit answer (429, or any answer with ``Retry-After``) pauses every thread
sharing the limiter, not only the one that got it, for the server's ``Retry-After`` (or the
backoff delay), and halves the request rate, which then recovers step by step as requests
succeed. Secrets are scrubbed from every message that could reach a file or a log.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("valueharms.remote")
OPENAI_URL = "https://api.openai.com/v1"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
PERSPECTIVE_KEY_ENV = "PERSPECTIVE_API_KEY"
T = TypeVar("T")


class Transient(Exception):
    """A fault worth retrying (rate limit, server error, timeout, broken body)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(Exception):
    """A fault that retrying cannot fix (bad request, bad key): recorded as failed at once."""


class Unscorable(Exception):
    """The service says this text cannot be scored (e.g. an unsupported language)."""


class Failed(Exception):
    """Retries exhausted or a permanent fault; the message says which."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True)
class Policy:
    """Retry and pacing settings. Defaults suit real APIs; tests shrink the delays."""

    attempts: int = 6  # tries in all, the first included
    backoff: float = 1.0  # first wait in seconds; doubles after each failed try
    max_backoff: float = 60.0
    timeout: float = 30.0  # per request
    qps: float = 1.0  # requests per second over all threads (0 = unlimited)
    concurrency: int = 4  # requests in flight
    shared_cooldown: bool = True  # a rate-limit answer pauses every thread, not only its own
    dedup: bool = True  # identical texts in one run are asked once


class RateLimiter:
    """Hands out start times at least ``interval`` apart to any number of threads.

    ``cool_down`` (after a rate-limit answer) holds every thread until the pause ends and
    doubles the interval; each success then takes 2 % off the extra, so the rate recovers to
    the configured qps slowly (a hundred good requests take 87 % of the extra off), the way
    TCP recovers after a loss: fast down, slow up, so a quota is not hit again at once.
    """

    FIRST_SLOWDOWN = 0.1  # seconds between requests after a 429 when qps is unlimited

    def __init__(self, qps: float):
        self.base = 1.0 / qps if qps > 0 else 0.0
        self.interval = self.base
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)

    def cool_down(self, seconds: float, slowest: float) -> None:
        """Nobody starts a request for ``seconds``; then requests go at half the rate, but
        never more than ``slowest`` seconds apart."""
        with self._lock:
            now = time.monotonic()
            if now >= self._paused_until:  # the 429s of one burst slow the rate down once
                slower = max(2 * self.interval, self.FIRST_SLOWDOWN)
                self.interval = max(self.base, min(slowest, slower))
            self._paused_until = max(self._paused_until, now + seconds)
            self._next = max(self._next, self._paused_until)

    def succeeded(self) -> None:
        with self._lock:
            if self.interval > self.base:
                extra = 0.98 * (self.interval - self.base)
                self.interval = self.base + (extra if extra > 1e-3 else 0.0)


@dataclass
class Stats:
    """What the remote calls cost: requests sent, retries, failures, shared cool-downs, and
    items answered by an identical text's request (thread-safe counters)."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    cooldowns: int = 0
    deduplicated: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every secret replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def call(fn: Callable[[], T], policy: Policy, limiter: RateLimiter, stats: Stats,
         secrets: tuple[str | None, ...] = ()) -> T:
    """``fn()`` with pacing and retries; raises Unscorable as is, Failed when it gives up."""
    for attempt in range(1, policy.attempts + 1):
        limiter.wait()
        stats.add(requests=1)
        try:
            result = fn()
        except Unscorable:
            raise
        except Permanent as exc:
            stats.add(failures=1)
            raise Failed(redact(str(exc), *secrets), attempt) from None
        except Transient as exc:
            message = redact(str(exc), *secrets)
            if attempt == policy.attempts:
                stats.add(failures=1)
                raise Failed(f"gave up after {attempt} attempts: {message}", attempt) from None
            delay = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
            delay = delay * random.uniform(0.5, 1.0)  # jitter: threads do not retry in step
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, policy.max_backoff))
            stats.add(retries=1)
            log.debug("attempt %d failed (%s); retrying in %.2fs", attempt, message, delay)
            if policy.shared_cooldown and _rate_limited(exc):
                # The quota is the server's, shared by all threads: all of them wait.
                stats.add(cooldowns=1)
                limiter.cool_down(delay, slowest=policy.max_backoff)
            else:
                time.sleep(delay)
        else:
            limiter.succeeded()
            return result
    raise AssertionError("unreachable")


def _rate_limited(exc: Transient) -> bool:
    """A 429, or any answer telling the client when to come back."""
    return exc.retry_after is not None or str(exc).startswith("HTTP 429")


class InFlight:
    """Identical texts asked at the same time are asked once: the first caller sends the
    request, later callers with the same text wait for its verdict. A settled verdict stays
    for the rest of the run (``keep`` decides which do; others are asked again)."""

    def __init__(self, keep: Callable[[object], bool]):
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._keep = keep

    def get(self, text: str, compute: Callable[[], T], stats: Stats) -> T:
        with self._lock:
            found = self._futures.get(text)
            owner = found is None
            future: Future[Any] = Future() if found is None else found
            if owner:
                self._futures[text] = future
        if not owner:
            stats.add(deduplicated=1)
            return future.result()
        try:
            result = compute()
        except BaseException as exc:
            self._forget(text)
            future.set_exception(exc)
            raise
        if not self._keep(result):
            self._forget(text)
        future.set_result(result)
        return result

    def _forget(self, text: str) -> None:
        with self._lock:
            self._futures.pop(text, None)


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header value (None when absent or not a number)."""
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def openai_fault(exc: Exception) -> Exception | None:
    """What an exception from the ``openai`` client means for a retry: :class:`Transient`
    (408, 409, 429, 5xx, connection, timeout, a broken body) or :class:`Permanent` (any other
    HTTP status); None when ``exc`` is not one of the client's."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        message = f"HTTP {exc.status_code}: {' '.join(str(exc.message).split())[:300]}"
        if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
            headers = getattr(exc.response, "headers", None)
            return Transient(message, retry_after=retry_after(
                headers.get("retry-after") if headers is not None else None))
        return Permanent(message)
    if isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError, ValueError)):
        # APITimeoutError is an APIConnectionError; a broken JSON body is a ValueError.
        return Transient(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    return None
