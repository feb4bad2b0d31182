"""One persistent cache for every remote or model call a scorer makes.

SQLite in WAL mode (readers never block the writer; a killed run loses nothing committed),
in ``$VALUEHARMS_CACHE/scores.sqlite`` (default ``~/.cache/valueharms``) or a path given with
``--cache``. A row is keyed by scorer, model, rubric hash and text hash, so re-scoring the
same texts with the same settings makes no call at all. Only settled verdicts are stored:
a failed call is never cached as a result, and an unparsed judge reply is not either, so
both are asked again on a later run.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from ..errors import InputError

SCHEMA = """CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, scorer TEXT NOT NULL, model TEXT NOT NULL, rubric TEXT NOT NULL,
    text TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL)"""


def default_path() -> Path:
    root = os.environ.get("VALUEHARMS_CACHE") or Path.home() / ".cache" / "valueharms"
    return Path(root) / "scores.sqlite"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ScoreCache:
    """``get_many``/``put_many`` of JSON results by (scorer, model, rubric hash, text hash)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
            self._db.commit()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise InputError(f"--cache {self.path}: not a usable SQLite cache ({exc})") from None

    @staticmethod
    def key(scorer: str, model: str, rubric: str, text: str) -> tuple[str, str, str, str, str]:
        """(key, scorer, model, rubric hash, text hash) for one call's input."""
        parts = (scorer, model, digest(rubric), digest(text))
        return (digest("\x1f".join(parts)), *parts)

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for i in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[i:i + 500]
            rows = self._db.execute(
                f"SELECT key, result FROM results WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update((k, json.loads(r)) for k, r in rows)
        return found

    def put_many(self, rows: list[tuple[tuple[str, str, str, str, str], dict]]) -> None:
        if not rows:
            return
        now = time.time()
        self._db.executemany(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*k, json.dumps(result, ensure_ascii=False), now) for k, result in rows])
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
