"""Getting the data sets: ``valueharms data fetch`` and ``valueharms data list``.

Every set that has a public source comes from it: a raw file address (the paper's repository
at a pinned commit, HolisticBias, AdvBench, Alpaca at a pinned commit) or a Hugging Face
dataset file at a pinned revision, fetched with ``huggingface_hub`` (``$HF_TOKEN`` for gated
ones). The PVQ-40 CSV is converted from the published file it is made from (the VIM code's
pvq40.xlsx at a pinned commit). ``$VALUEHARMS_MIRROR`` replaces every source by
``MIRROR/<file name>`` (an offline copy, a test server; for a converted set the published
file's name). A file goes into the cache only whole and only when its checksum matches: its
SHA-256, or for a set we had no copy of (Alpaca, the safety-filtered Dolly) git's blob id of
the file at the pinned commit; a converted set's published file is checked by its blob id and
the conversion by our file's SHA-256. SAMSum has no public source (``data list`` says why).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import InputError
from .sources import DATASETS, DataSet, cache_dir, on_search_path

CHUNK = 1 << 16


@dataclass(frozen=True)
class Found:
    """Where a data set was found and whether its checksum matches."""

    key: str
    path: Path | None  # None: in no data directory
    checksum: str  # ok, MISMATCH, unchecked (no checksum known), missing

    def line(self, source: str = "-") -> str:
        """One line of ``valueharms data list``: the path, else where it would come from."""
        return f"{self.key:38} {self.checksum:9} {self.path or source}"


def source(ds: DataSet) -> str:
    """Where ``valueharms data fetch`` gets ``ds`` (the mirror when one is set)."""
    if ds.made_from:
        return source(ds.made_from.published)
    mirror = os.environ.get("VALUEHARMS_MIRROR")
    if mirror:
        return f"{mirror.rstrip('/')}/{ds.filename}"
    if ds.hub:
        return f"hf://datasets/{ds.hub.repo}@{ds.hub.revision}/{ds.hub.filename}"
    if ds.url:
        return ds.url
    raise InputError(f"data set {ds.key}: no public source to fetch it from ({ds.no_source}); "
                     f"put {ds.filename} in a data directory or pass --data-dir DIR")


def where_from(ds: DataSet) -> str:
    """Where ``ds`` comes from, for ``valueharms data list``: its source, or why it has none."""
    if ds.made_from:
        return f"{source(ds)} (converted to {ds.filename})"
    return source(ds) if ds.fetchable else f"(no public source: {ds.no_source})"


def _hexdigest(digest, path: Path) -> str:
    """``digest`` updated with the file's bytes, read in chunks; its hex digest."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    return _hexdigest(hashlib.sha256(), Path(path))


def git_blob(path: Path) -> str:
    """git's object id of a file: SHA-1 over ``blob <size>\0`` and its bytes."""
    return _hexdigest(hashlib.sha1(f"blob {path.stat().st_size}\0".encode()), path)


def mismatch(path: Path, ds: DataSet) -> str | None:
    """What is wrong with ``path``'s checksum (None when it matches or none is known)."""
    if ds.sha256 and (digest := sha256(path)) != ds.sha256:
        return f"sha256 {digest}, expected {ds.sha256}"
    if ds.git_blob and (blob := git_blob(path)) != ds.git_blob:
        return f"git blob id {blob}, expected {ds.git_blob}"
    return None


def download(ds: DataSet, *, progress: bool = True) -> Path:
    """Fetch ``ds`` into the cache (see the module notes); InputError when it fails."""
    target = cache_dir() / ds.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch.") as tmp:
        if ds.made_from:
            published = _checked(ds.made_from.published, Path(tmp), progress, ds.filename)
            part = Path(tmp) / Path(ds.filename).name
            ds.made_from.convert(published, part)
            wrong = mismatch(part, ds)
            if wrong:
                raise InputError(f"{ds.filename} converted from {source(ds)} has {wrong}")
        else:
            part = _checked(ds, Path(tmp), progress, ds.filename)
        os.replace(part, target)
    return target


def _checked(ds: DataSet, folder: Path, progress: bool, needed: str) -> Path:
    """``ds`` downloaded into ``folder``, its checksum matching; InputError otherwise
    (``needed``: the file a user could place instead, named when the download fails)."""
    where = source(ds)
    part = folder / Path(ds.filename).name
    try:
        if ds.hub and not os.environ.get("VALUEHARMS_MIRROR"):
            _from_hub(ds, part)
        else:
            _from_url(where, part, ds.filename, progress)
    except OSError as exc:
        raise InputError(f"missing data file {needed}: download from {where} failed "
                         f"({exc}); place the file in a data directory or pass "
                         f"--data-dir DIR") from None
    wrong = mismatch(part, ds)
    if wrong:
        raise InputError(f"downloaded {ds.filename} from {where} has {wrong}")
    return part


def _from_url(url: str, out: Path, label: str, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(out, "wb") as fh:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                fh.write(block)
                bar.update(len(block))


def _from_hub(ds: DataSet, out: Path) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    assert ds.hub is not None
    token = os.environ.get("HF_TOKEN") or None
    if ds.hub.gated and not token:
        raise InputError(f"data set {ds.key}: {ds.hub.repo} is gated on Hugging Face; accept "
                         f"its terms there and set $HF_TOKEN")
    try:
        path = hf_hub_download(ds.hub.repo, ds.hub.filename, repo_type="dataset",
                               revision=ds.hub.revision, token=token, local_dir=out.parent)
    except GatedRepoError:
        raise InputError(f"data set {ds.key}: {ds.hub.repo} is gated; $HF_TOKEN must belong "
                         f"to an account that accepted its terms") from None
    except HfHubHTTPError as exc:
        raise OSError(str(exc).splitlines()[0]) from None
    if Path(path) != out:
        shutil.move(path, out)


def fetch(keys: Sequence[str], *, force: bool = False, progress: bool = True,
          data_dir: str | None = None) -> list[Path]:
    """Each set of ``keys`` into the cache, unless a good copy is found already (``force``:
    fetch anyway). Every name is checked before anything is fetched."""
    unknown = [k for k in keys if k not in DATASETS]
    if unknown:
        raise InputError(f"data set {unknown[0]!r}: unknown; expected one of "
                         f"{', '.join(DATASETS)}")
    for key in keys:
        source(DATASETS[key])  # every set has somewhere to come from, before any download
    paths = []
    for key in keys:
        found = find(key, data_dir)
        paths.append(found.path if found.path and found.checksum != "MISMATCH" and not force
                     else download(DATASETS[key], progress=progress))
    return paths


def find(key: str, data_dir: str | None = None) -> Found:
    """Where data set ``key`` is found on the search path, and its checksum state."""
    ds = DATASETS[key]
    path = on_search_path(key, data_dir)
    if path is None:
        return Found(key, None, "missing")
    state = "unchecked" if not (ds.sha256 or ds.git_blob) else \
        "MISMATCH" if mismatch(path, ds) else "ok"
    return Found(key, path, state)
