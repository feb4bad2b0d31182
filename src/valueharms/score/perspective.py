"""Google's Perspective API (comments:analyze) over HTTP, through the retrying client.

The key comes from ``$PERSPECTIVE_API_KEY`` only and travels in the ``x-goog-api-key``
header, never in the URL, so no error message, log line or output file can carry it.
"""
from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any

from ..errors import InputError
from ..records import OK, UNSCORABLE
from ..remote import PERSPECTIVE_KEY_ENV, Permanent, Policy, Transient, Unscorable, retry_after
from .base import RemoteScorer, SpanOption, Verdict

URL = "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze"
KEY_ENV = PERSPECTIVE_KEY_ENV  # the old name
ATTRIBUTES = ("TOXICITY", "SEVERE_TOXICITY", "IDENTITY_ATTACK", "INSULT", "PROFANITY", "THREAT",
              "SEXUALLY_EXPLICIT", "FLIRTATION")
NOT_SUPPORTED = "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"


class Perspective(SpanOption, RemoteScorer):
    """``value`` is the first attribute's summary probability; all attributes go in meta."""

    def __init__(self, attributes: str | list[str] = "TOXICITY", perspective_url: str = URL,
                 languages: str | list[str] | None = None, *, attempts: int = 6,
                 backoff: float = 1.0, max_backoff: float = 60.0, timeout: float = 30.0,
                 qps: float = 1.0, concurrency: int = 4, span: str | None = None):
        self._setup_span(span)  # a bad option is reported before a missing key
        key = os.environ.get(KEY_ENV)
        if not key:
            raise InputError(f"scorer perspective: ${KEY_ENV} is not set (the API key comes from "
                             f"the environment only)")
        super().__init__(Policy(attempts, backoff, max_backoff, timeout, qps, concurrency), key)
        self.attributes = [a.upper() for a in _names(attributes)]
        unknown = [a for a in self.attributes if a not in ATTRIBUTES]
        if not self.attributes or unknown:
            raise InputError(f"--attributes {','.join(self.attributes)}: expected names among "
                             f"{', '.join(ATTRIBUTES)}")
        self.languages = _names(languages) if languages else []
        self.url = perspective_url
        self.name = "perspective:" + "+".join(self.attributes) + self.span_label()
        self.model = f"perspective@{perspective_url}"  # a test server's answers never pass as real
        self.rubric = json.dumps({"attributes": self.attributes, "languages": self.languages})

    def score_batch(self, items):
        # An empty comment is rejected by the API; say so without spending a request.
        return [Verdict(UNSCORABLE, raw="empty text") if not text.strip() else self._one(text)
                for _, text in items]

    def request(self, text: str) -> Verdict:
        body: dict[str, Any] = {"comment": {"text": text}, "doNotStore": True,
                "requestedAttributes": {a: {} for a in self.attributes}}
        if self.languages:
            body["languages"] = self.languages
        req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "x-goog-api-key": str(self._secret)})
        try:
            with urllib.request.urlopen(req, timeout=self.policy.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            raise _http_fault(exc) from None
        except (TimeoutError, ConnectionError, urllib.error.URLError, http.client.HTTPException) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from None
        return self._parse(payload)

    def _parse(self, payload: bytes) -> Verdict:
        try:
            reply = json.loads(payload)
            scores = {a: reply["attributeScores"][a]["summaryScore"]["value"] for a in self.attributes}
        except (ValueError, KeyError, TypeError) as exc:
            raise Transient(f"malformed reply ({type(exc).__name__}: {str(exc)[:200]})") from None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                   for v in scores.values()):
            raise Transient(f"malformed reply (scores {scores})")
        first = float(scores[self.attributes[0]])
        return Verdict(OK, value=first, raw=json.dumps(scores),
                       meta={"attributes": scores, "languages": reply.get("languages")})


def _http_fault(exc: urllib.error.HTTPError) -> Exception:
    try:
        detail = exc.read(4000).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        detail = ""
    message = f"HTTP {exc.code}: {' '.join(detail.split())[:500]}"
    if exc.code == 400 and NOT_SUPPORTED in detail:
        return Unscorable(message)
    if exc.code in (408, 429) or exc.code >= 500:
        return Transient(message, retry_after=retry_after(exc.headers.get("Retry-After")))
    return Permanent(message)


def _names(value: str | list[str] | tuple[str, ...]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(a).strip() for a in items if str(a).strip()]
