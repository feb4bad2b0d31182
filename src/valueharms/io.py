"""Deprecated: renamed :mod:`valueharms.files` (this name is the standard library's).

Kept for one release so that ``from valueharms.io import ...`` still works.
"""
from .files import (  # noqa: F401
                    JsonlAppender,
                    atomic_dir,
                    atomic_write_text,
                    cache_root,
                    exclusive,
                    read_jsonl,
                    read_jsonl_lines,
                    read_text,
                    versions,
                    write_jsonl,
)
