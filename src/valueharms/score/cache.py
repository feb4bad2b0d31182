"""One persistent cache for every remote or model call a scorer makes.

SQLite in WAL mode (readers never block the writer; a killed run loses nothing committed),
in ``$VALUEHARMS_CACHE/scores.sqlite`` (default ``~/.cache/valueharms``) or a path given with
``--cache``. A row is keyed by scorer, model, rubric hash and text hash, so re-scoring the
same texts with the same settings makes no call at all. Only settled verdicts are stored:
a failed call is never cached as a result, and an unparsed judge reply is not either, so
both are asked again on a later run.

Several processes may share one cache (two studies, two ``valueharms score`` runs): SQLite
serialises their writes and each waits up to a minute for the others. A file that is not a
database, or a damaged one, only costs repeated calls: when opening finds it so, it is moved
aside (``NAME.corrupt-TIME``, said on stderr) and an empty cache starts; damage found later,
mid-run, stops the run with one line naming the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from ..files import cache_root

log = logging.getLogger("valueharms.score.cache")
_DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT")  # not "busy" or "locked": those are waited for

SCHEMA = """CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, scorer TEXT NOT NULL, model TEXT NOT NULL, rubric TEXT NOT NULL,
    text TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL)"""


def default_path() -> Path:
    """The score cache file under the cache root."""
    return cache_root() / "scores.sqlite"


def digest(text: str) -> str:
    """The SHA-256 of ``text`` (a cache key part)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ScoreCache:
    """``get_many``/``put_many`` of JSON results by (scorer, model, rubric hash, text hash)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._connect_waiting()
            except sqlite3.DatabaseError as exc:
                if not _damaged(exc):
                    raise
                self._move_aside(exc)
                self._db = self._connect_waiting()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise InputError(f"score cache {self.path}: not usable ({exc})") from None

    def _connect_waiting(self, patience: float = 60.0) -> sqlite3.Connection:
        """``_connect``, tried again while another process holds the file. Switching a new
        file to WAL takes a lock that SQLite does not wait for (its busy timeout does not
        cover it), so two processes opening one new cache at once would otherwise fail."""
        deadline = time.monotonic() + patience
        pause = 0.01
        while True:
            try:
                return self._connect()
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(SCHEMA)
            db.execute("SELECT key FROM results LIMIT 1").fetchall()  # reads the table's root
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, exc: sqlite3.DatabaseError) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):  # the write-ahead log belongs to the damaged file
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                os.replace(part, f"{aside}{suffix}")
        log.warning("score cache %s is damaged (%s): moved it to %s and started an empty one "
                    "(cached verdicts are asked again)", self.path, exc, aside)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite failures mid-run as one line naming the cache (exit 2), never a traceback."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if _damaged(exc):
                raise InputError(f"score cache {self.path} is damaged ({exc}); move it aside "
                                 f"or delete it and run again (it only spares repeated calls)"
                                 ) from None
            raise InputError(f"score cache {self.path}: {exc} (a full disk, or another "
                             f"process holding it for over a minute)") from None

    @staticmethod
    def key(scorer: str, model: str, rubric: str, text: str) -> tuple[str, str, str, str, str]:
        """(key, scorer, model, rubric hash, text hash) for one call's input."""
        parts = (scorer, model, digest(rubric), digest(text))
        return (digest("\x1f".join(parts)), *parts)

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        with self._errors():
            for i in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
                chunk = keys[i:i + 500]
                rows = self._db.execute(f"SELECT key, result FROM results WHERE key IN "
                                        f"({','.join('?' * len(chunk))})", chunk).fetchall()
                found.update((k, json.loads(r)) for k, r in rows)
        return found

    def put_many(self, rows: list[tuple[tuple[str, str, str, str, str], dict]]) -> None:
        if not rows:
            return
        now = time.time()
        with self._errors(), self._db:  # one transaction: committed whole or rolled back
            self._db.executemany(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*k, json.dumps(result, ensure_ascii=False), now) for k, result in rows])

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def merge(self, other: str | os.PathLike) -> int:
        """Copy the rows of another cache file that this one lacks (a Ray score step's own
        cache, merged by the driver); returns how many were added. A missing file adds none."""
        if not Path(other).is_file():
            return 0
        before = len(self)
        self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            self._db.execute("INSERT OR IGNORE INTO results SELECT * FROM other.results")
            self._db.commit()
        finally:
            self._db.execute("DETACH DATABASE other")
        return len(self) - before

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ScoreCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    return getattr(exc, "sqlite_errorname", "") in _DAMAGED or "malformed" in str(exc)


def _busy(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
            or "locked" in str(exc) or "busy" in str(exc))
