"""The one retrying, rate-limited way to call a remote scorer.

Every remote call (Perspective, an OpenAI-compatible judge) runs through :func:`call` with a
:class:`Policy`: a shared :class:`RateLimiter` spaces the requests, transient faults (429,
5xx, timeouts, cut or malformed bodies) are retried with exponential backoff, and a call that
never succeeds raises :class:`Failed`, which the runner records as status ``failed`` (never a
number). Secrets are scrubbed from every message that could reach a file or a log.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

log = logging.getLogger("valueharms.score")
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


class RateLimiter:
    """Hands out start times at least 1/qps apart to any number of threads."""

    def __init__(self, qps: float):
        self.interval = 1.0 / qps if qps > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass
class Stats:
    """What the remote calls cost: requests sent, retries, failures (thread-safe counters)."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


def redact(text: str, *secrets: str | None) -> str:
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
            return fn()
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
            time.sleep(delay)
    raise AssertionError("unreachable")
