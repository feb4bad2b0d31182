"""Local stand-ins for remote scoring APIs: threaded HTTP servers on 127.0.0.1.

``FakePerspective`` speaks Perspective's comments:analyze; ``FakeJudge`` speaks the OpenAI
chat-completions API. Both answer deterministically from the text (so a test can tell
whether a stored number is the server's), and inject faults on request:

- ``storm``: modes for the first requests, whatever their text (e.g. 20 x "429");
- ``script``: {substring: [mode, ...]}: a request whose text contains the substring takes
  the next mode of its list (so each item's fault history is fixed under concurrency);
- ``latency``: seconds added to every reply;
- ``quota``: requests per second the server accepts (a sliding one-second window, as API
  quotas are); a request above it gets 429 with ``Retry-After: 1`` and is not counted in
  the window.

Modes: ok, 429, 500, 503, slow (reply after ``slow_seconds``, past the client's timeout),
truncated (Content-Length larger than the body, then the connection closes), malformed (200
with a broken JSON body), unsupported (Perspective's 400 LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE),
noscore (a judge reply without a score or flag), bad-request (400).

Servers run on daemon threads, are used as context managers, and stop by themselves after
``lifetime`` seconds in any case.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def fake_toxicity(text: str) -> float:
    """The fake Perspective's deterministic score for ``text`` (in [0, 1))."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2 ** 32


def fake_harm(text: str) -> int:
    """The fake judge's deterministic 1-5 score for a prompt."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 5 + 1


class _Server:
    path = "/"

    def __init__(self, *, storm: list[str] | None = None, script: dict[str, list[str]] | None = None,
                 latency: float = 0.0, slow_seconds: float = 1.0, lifetime: float = 120.0,
                 quota: float | None = None):
        self.storm = list(storm or [])
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.lifetime = lifetime
        self.quota = quota
        self._accepted: list[float] = []  # monotonic times of requests inside the quota
        self.requests: list[dict] = []  # every request: text, mode, headers (lower-case names)
        self.modes: Counter = Counter()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle
    def __enter__(self) -> _Server:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                owner._handle(self)

            def log_message(self, *args):  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._httpd is not None:
            httpd, self._httpd = self._httpd, None
            httpd.shutdown()
            httpd.server_close()
            self._timer.cancel()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    # -- requests
    def _mode(self, text: str) -> str:
        with self._lock:
            if self.quota is not None:
                now = time.monotonic()
                self._accepted = [t for t in self._accepted if now - t < 1.0]
                if len(self._accepted) >= self.quota:
                    return "quota"
                self._accepted.append(now)
            if self.storm:
                return self.storm.pop(0)
            for marker, modes in self.script.items():
                if marker in text and modes:
                    return modes.pop(0)
            return "ok"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length", 0))
        try:
            body = json.loads(h.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        text = self.text_of(body)
        mode = self._mode(text)
        with self._lock:
            self.requests.append({"text": text, "mode": mode,
                                  "headers": {k.lower(): v for k, v in h.headers.items()},
                                  "path": h.path, "model": body.get("model")})
            self.modes[mode] += 1
        if self.latency:
            time.sleep(self.latency)
        try:
            self._reply(h, mode, text, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout we caused on purpose)

    def _reply(self, h, mode: str, text: str, body: dict) -> None:
        if mode == "slow":
            time.sleep(self.slow_seconds)
            mode = "ok"
        if mode == "quota":
            return _send(h, 429, {"error": {"code": 429, "message": "quota exceeded"}},
                         {"Retry-After": "1"})
        if mode in ("429", "500", "503", "bad-request"):
            code = 400 if mode == "bad-request" else int(mode)
            return _send(h, code, {"error": {"code": code, "message": f"injected {mode}"}},
                         {"Retry-After": "0"} if code == 429 else None)
        if mode == "unsupported":
            return _send(h, 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                            "message": "Attribute TOXICITY does not support "
                                                       "request languages: xx",
                                            "details": [{"errorType":
                                                         "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"}]}})
        if mode == "malformed":
            return _send_raw(h, 200, b'{"attributeScores": {"TOXICITY": ')
        if mode == "truncated":
            payload = json.dumps(self.answer(text, body, "ok")).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload) + 100))
            h.end_headers()
            h.wfile.write(payload[: len(payload) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        return _send(h, 200, self.answer(text, body, mode))

    # -- per API
    def text_of(self, body: dict) -> str:
        raise NotImplementedError

    def answer(self, text: str, body: dict, mode: str) -> dict:
        raise NotImplementedError


class FakePerspective(_Server):
    path = "/v1alpha1/comments:analyze"

    def text_of(self, body: dict) -> str:
        return str(body.get("comment", {}).get("text", ""))

    def answer(self, text: str, body: dict, mode: str) -> dict:
        attrs = body.get("requestedAttributes", {"TOXICITY": {}})
        return {"attributeScores": {a: {"summaryScore": {"value": fake_toxicity(a + text),
                                                         "type": "PROBABILITY"}}
                                    for a in attrs} if attrs else {},
                "languages": ["en"]}


class FakeJudge(_Server):
    """``reply(prompt) -> str`` sets the judge's words; by default a hexphi-style score."""

    path = "/v1"

    def __init__(self, reply: Callable[[str], str] | None = None, *, snapshot: str | None = None,
                 fingerprint: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.reply = reply or (lambda prompt: f"score: {fake_harm(prompt)}\nreason: fake judge")
        self.snapshot = snapshot  # the dated model name a real server returns for an alias
        self.fingerprint = fingerprint

    def text_of(self, body: dict) -> str:
        messages = body.get("messages") or [{}]
        return str(messages[-1].get("content", ""))

    def answer(self, text: str, body: dict, mode: str) -> dict:
        content = "I would rather not grade this one." if mode == "noscore" else self.reply(text)
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                "model": self.snapshot or body.get("model", "fake"),
                "system_fingerprint": self.fingerprint,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def _send(h, code: int, payload: dict, headers: dict | None = None) -> None:
    _send_raw(h, code, json.dumps(payload).encode(), headers)


def _send_raw(h, code: int, data: bytes, headers: dict | None = None) -> None:
    h.send_response(code)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(data)
    h.wfile.flush()
