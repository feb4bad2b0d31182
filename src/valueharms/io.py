"""File output that never leaves a half-written result behind."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator

from . import sources

# What every manifest (training runs, study steps) records about the software that made it.
_PACKAGES = ("valueharms", "torch", "transformers", "peft", "numpy", "pandas", "scipy")


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


class JsonlAppender:
    """Append-only JSONL: one complete line per write, flushed and fsynced.

    A killed writer leaves at most one unterminated last line, which :func:`open` drops
    before appending, so resumed runs never duplicate or corrupt records.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_partial_tail()
        self._fh = open(self.path, "a", encoding="utf-8")

    def _truncate_partial_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)

    def records(self) -> list[dict]:
        """What is already in the file (complete lines only)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        return list(sources.read_jsonl(self.path))

    def write(self, record: dict) -> None:
        self.write_many([record])

    def write_many(self, records: Iterable[dict]) -> None:
        """Several complete lines with one fsync; a kill keeps a prefix of them (whole lines)."""
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if text:
            self._fh.write(text)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
