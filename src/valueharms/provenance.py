"""What made a number: the exact model, adapter, code and software behind a record.

Every manifest and every generation and score record carries :func:`environment` (valueharms'
version, git commit and dirty flag, every number-touching package's version); generation
records add the model's Hub commit or content hash, the adapter's content hash, backend,
device and dtype; judge scores add the model name and ``system_fingerprint`` the server
returned. Content hashes are computed once per process and file set (a 7B model: ~15 s).
"""
from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from .files import versions

# Weight, config and tokenizer files: what decides a model's or adapter's numbers.
_CONTENT = ("*.json", "*.safetensors", "*.bin", "*.gguf", "*.model", "*.txt", "*.jinja")
_NOT_CONTENT = {"manifest.json"}  # the trainer's record of how (and how long) it ran


def _content_files(root: Path) -> list[Path]:
    """The files that decide the numbers; a training manifest (times, durations) is not one."""
    return sorted({f for pattern in _CONTENT for f in root.glob(pattern)
                   if f.is_file() and f.name not in _NOT_CONTENT})


@functools.cache
def _dir_sha256(path: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    root = Path(path)
    for file in _content_files(root):
        digest.update(file.name.encode() + b"\0")
        if file.name == "adapter_config.json":
            digest.update(canonical_adapter_config(file.read_bytes()))
            continue
        with open(file, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def canonical_adapter_config(data: bytes) -> bytes:
    """An ``adapter_config.json``'s bytes with ``target_modules`` and the keys sorted: PEFT
    writes the modules from a set, in an order that varies per process, and the same adapter
    must hash (and compare) the same."""
    config = json.loads(data)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    return json.dumps(config, sort_keys=True).encode()


def content_sha256(path: str | Path) -> str:
    """SHA-256 over a model or adapter folder's files (names and bytes, in name order)."""
    root = Path(path)
    files = _content_files(root)
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _dir_sha256(str(root.resolve()), stamp)


def model_identity(model: str, resolved: str, revision: str | None = None,
                   commit: str | None = None) -> dict[str, Any]:
    """``{"id", "revision", "commit"}`` for a Hub model (the commit the files came from),
    ``{"id", "sha256"}`` for a local folder."""
    if Path(resolved).is_dir():
        return {"id": model, "sha256": content_sha256(resolved)}
    return {"id": model, "revision": revision, "commit": commit or hub_commit(resolved, revision)}


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit of the locally cached snapshot of a Hub repo (None if not cached)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True)).name
    except Exception:  # not cached, not a Hub id, hub library missing: nothing to record
        return None


def adapter_sha256(path: str | None) -> str | None:
    """The content hash of a local adapter folder (None without one, e.g. a served adapter)."""
    return content_sha256(path) if path and Path(path).is_dir() else None


@functools.lru_cache(maxsize=1)
def code_revision() -> dict[str, Any]:
    """valueharms' version and, in a git checkout, its commit and whether it had edits."""
    source = Path(__file__).resolve().parent
    out: dict[str, Any] = {"version": versions().get("valueharms"), "git_commit": None,
                           "git_dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(["git", "-C", str(source), "status", "--porcelain",
                                     "--untracked-files=no"], capture_output=True, text=True,
                                    timeout=10)
            out.update(git_commit=commit.stdout.strip(), git_dirty=bool(status.stdout.strip()))
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


def device_name(device: str) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (x86_64)``."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({platform.machine()})"


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Code revision and every number-touching package's version, for manifests."""
    return {"code": code_revision(), "versions": versions(), "platform": platform.platform()}

