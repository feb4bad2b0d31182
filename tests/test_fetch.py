"""``valueharms data fetch`` and ``data list`` against a mirror served on 127.0.0.1."""
from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from conftest import need_data, run_cli
from valueharms.errors import InputError


@pytest.fixture
def served(tmp_path):
    """A local HTTP server of the folder tmp_path/mirror: (folder, its address)."""
    root = tmp_path / "mirror"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:  # stderr is what the in-process CLI tests read
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def mirror(served):
    """A local HTTP mirror with three real files and one that does not match its checksum."""
    data_dir = need_data("valueeval", "hexphi", "arguments-test")
    root, address = served
    (root / "argument_generation").mkdir()
    for name in ("valueEval_10.csv", "hex-phi.csv", "argument_generation/test.csv"):
        (root / name).write_bytes((data_dir / name).read_bytes())
    (root / "databricks-dolly-15k.jsonl").write_text('{"instruction": "not the real file"}\n')
    return address


def _env(tmp_path: Path, mirror: str) -> dict[str, str]:
    # No data directory holds the files: only the cache, filled by the fetch.
    return {"VALUEHARMS_DATA": str(tmp_path / "empty"), "VALUEHARMS_CACHE": str(tmp_path / "cache"),
            "VALUEHARMS_MIRROR": mirror}


@pytest.mark.slow
def test_fetch_puts_checked_files_in_the_cache_and_list_shows_them(tmp_path, mirror):
    data_dir = need_data("valueeval", "arguments-test")
    env = _env(tmp_path, mirror)
    result = run_cli("data", "fetch", "valueeval", "arguments-test", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    cache = tmp_path / "cache" / "data"
    for name in ("valueEval_10.csv", "argument_generation/test.csv"):
        assert (cache / name).read_bytes() == (data_dir / name).read_bytes()
    assert "valueEval_10.csv" in result.stderr  # the progress bar names the file
    listing = run_cli("data", "list", cwd=tmp_path, env=env)
    rows = {line.split()[0]: line.split()[1:] for line in listing.stdout.splitlines()[1:]}
    assert rows["valueeval"] == ["ok", str(cache / "valueEval_10.csv")]
    assert rows["hexphi"] == ["missing", f"{mirror}/hex-phi.csv"]  # where it would come from
    again = run_cli("data", "fetch", "valueeval", "--no-progress", cwd=tmp_path, env=env)
    assert again.returncode == 0 and again.stderr == ""  # found, checked: not fetched again


def test_a_checksum_mismatch_exits_2_and_caches_nothing(tmp_path, mirror):
    env = _env(tmp_path, mirror)
    result = run_cli("data", "fetch", "dolly", "--no-progress", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "sha256" in result.stderr
    assert not (tmp_path / "cache" / "data" / "databricks-dolly-15k.jsonl").exists()
    assert not list((tmp_path / "cache" / "data").glob(".fetch.*"))


@pytest.mark.parametrize("args, says", [
    ([], "name the data sets or give --all"),
    (["nope"], "data set 'nope': unknown"),
    (["samsum"], "samsum: no public source to fetch it from (no pinned"),  # without a mirror
    (["advbench"], "download from"),  # not on the mirror: HTTP 404
])
@pytest.mark.slow
def test_bad_fetches_exit_2_with_one_line(tmp_path, mirror, args, says):
    env = _env(tmp_path, mirror if args != ["samsum"] else "")
    result = run_cli("data", "fetch", *args, "--no-progress", cwd=tmp_path, env=env)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1



# ----------------------------------------------------------------- the Hugging Face path
# No network here: huggingface_hub's download function is replaced by one that copies from a
# local folder laid out as repo/revision/file (the transport only). What valueharms does with
# the file (the pinned repo, revision and token it asks for, the checksum, the placement into
# the cache) is the real code.

@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The local "hub" folder and the list of download calls made."""
    import shutil

    import huggingface_hub

    root, calls = tmp_path / "hub", []

    def download(repo_id, filename, *, repo_type, revision, token, local_dir):
        calls.append({"repo": repo_id, "file": filename, "type": repo_type,
                      "revision": revision, "token": token})
        source = root / repo_id / revision / filename
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.delenv("VALUEHARMS_MIRROR", raising=False)
    monkeypatch.setenv("VALUEHARMS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VALUEHARMS_DATA", str(tmp_path / "empty"))
    return root, calls


def _cli(*args: str) -> tuple[int, str]:
    """The CLI in this process (the fake transport lives here): exit code, stderr."""
    import contextlib
    import io

    from valueharms.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(args))
    return rc, err.getvalue()


def test_a_hub_file_is_asked_at_its_pinned_revision_and_refused_unless_it_matches(hub, tmp_path):
    from valueharms.sources import DATASETS

    root, calls = hub
    dolly = DATASETS["dolly"]
    assert dolly.hub is not None
    served = root / dolly.hub.repo / dolly.hub.revision / dolly.hub.filename
    served.parent.mkdir(parents=True)
    served.write_text('{"instruction": "not the published file"}\n')
    rc, err = _cli("data", "fetch", "dolly", "--no-progress")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "sha256" in err, err
    assert calls == [{"repo": "databricks/databricks-dolly-15k", "file": "databricks-dolly-15k.jsonl",
                      "type": "dataset", "revision": dolly.hub.revision, "token": None}]
    cache = tmp_path / "cache" / "data"
    assert not (cache / dolly.filename).exists() and not list(cache.glob(".fetch.*"))


def test_a_matching_hub_file_is_placed_in_the_cache(hub, tmp_path, monkeypatch):
    import hashlib

    from valueharms import fetch
    from valueharms.sources import DataSet, HubFile

    root, calls = hub
    body = b'{"dialogue": "A: hi\\nB: hello", "summary": "They greet."}\n'
    ds = DataSet("tiny", "nested/tiny.jsonl", "a test set", None, hashlib.sha256(body).hexdigest(),
                 "one row", hub=HubFile("org/tiny", "data/tiny.jsonl", "0123abcd", gated=True))
    served = root / "org/tiny/0123abcd/data/tiny.jsonl"
    served.parent.mkdir(parents=True)
    served.write_bytes(body)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(InputError, match=r"gated .*\$HF_TOKEN"):
        fetch.download(ds, progress=False)
    assert calls == []  # a gated set without a token asks nothing
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    path = fetch.download(ds, progress=False)
    assert path == tmp_path / "cache" / "data" / "nested" / "tiny.jsonl"
    assert path.read_bytes() == body
    assert calls[-1]["token"] == "hf_test_token" and calls[-1]["revision"] == "0123abcd"
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.jsonl"]  # nothing left over


def test_a_git_blob_id_checks_a_file_without_a_sha256(tmp_path):
    import subprocess

    from valueharms import fetch
    from valueharms.sources import DATASETS

    path = tmp_path / "alpaca_data.json"
    path.write_text('[{"instruction": "x", "input": "", "output": "y"}]\n')
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True)
    assert git.returncode == 0 and fetch.git_blob(path) == git.stdout.strip()
    alpaca = DATASETS["alpaca"]
    assert alpaca.sha256 is None and alpaca.git_blob and alpaca.url and "/main/" not in alpaca.url
    assert fetch.mismatch(path, alpaca) == (f"git blob id {git.stdout.strip()}, expected "
                                            f"{alpaca.git_blob}")


# ----------------------------------------------------------------- a converted set: PVQ-40
# The published pvq40.xlsx is not in the repository or the shared data: the tests build a sheet
# of the same form (one column "question", the 40 portraits, with the published sheet's stray
# </span> after item 9 and the spaces after items 15 and 25) from the shared CSV's texts.

def _pvq40_sheet(path: Path, change: dict[int, str] | None = None) -> Path:
    """A pvq40.xlsx like the VIM code's, written with pandas (``change``: item -> text)."""
    import pandas as pd

    texts = pd.read_csv(need_data("pvq40") / "pvq40.csv", dtype=str)["text"].tolist()
    texts[8] += "</span>"
    texts[14] += " "
    texts[24] += " "
    for item, text in (change or {}).items():
        texts[item - 1] = text
    pd.DataFrame({"question": texts}).to_excel(path, index=False)
    return path


def _with_published_blob(monkeypatch, blob: str) -> None:
    """DATASETS' pvq40 as it is, but its published file's git blob id replaced by ``blob``."""
    from dataclasses import replace

    from valueharms import sources

    ds = sources.DATASETS["pvq40"]
    assert ds.made_from is not None
    made_from = replace(ds.made_from, published=replace(ds.made_from.published, git_blob=blob))
    monkeypatch.setitem(sources.DATASETS, "pvq40", replace(ds, made_from=made_from))


@pytest.mark.slow
def test_pvq40_is_fetched_as_the_published_xlsx_and_refused_unless_its_blob_id_matches(
        tmp_path, served):
    root, address = served
    _pvq40_sheet(root / "pvq40.xlsx")  # right form, but not the published file's bytes
    env = _env(tmp_path, address)
    listing = run_cli("data", "list", cwd=tmp_path, env=env)
    assert f"{address}/pvq40.xlsx (converted to pvq40.csv)" in listing.stdout
    result = run_cli("data", "fetch", "pvq40", "--no-progress", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "downloaded pvq40.xlsx" in result.stderr and "git blob id" in result.stderr
    assert not list((tmp_path / "cache" / "data").iterdir())  # nothing cached, nothing left


def test_pvq40_conversion_gives_our_csv_byte_for_byte(tmp_path, served, monkeypatch):
    from valueharms import fetch

    root, address = served
    sheet = _pvq40_sheet(root / "pvq40.xlsx")
    _with_published_blob(monkeypatch, fetch.git_blob(sheet))
    for name, value in _env(tmp_path, address).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # ../shared/data is searched from the working folder
    rc, err = _cli("data", "fetch", "pvq40", "--no-progress")
    assert rc == 0, err
    cached = tmp_path / "cache" / "data" / "pvq40.csv"
    assert cached.read_bytes() == (need_data("pvq40") / "pvq40.csv").read_bytes()
    assert fetch.find("pvq40").checksum == "ok"


def test_a_conversion_that_differs_from_our_csv_is_refused(tmp_path, served, monkeypatch):
    from valueharms import fetch

    root, address = served
    sheet = _pvq40_sheet(root / "pvq40.xlsx", {3: "He thinks equality matters."})
    _with_published_blob(monkeypatch, fetch.git_blob(sheet))
    for name, value in _env(tmp_path, address).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # ../shared/data is searched from the working folder
    rc, err = _cli("data", "fetch", "pvq40", "--no-progress")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "pvq40.csv converted from" in err and "sha256" in err
    assert not list((tmp_path / "cache" / "data").iterdir())


@pytest.mark.parametrize("sheet, says", [
    ({"text": ["x"] * 40}, "no column 'question'"),
    ({"question": ["x"] * 39}, "expected 40 non-empty portraits, found 39 in 39 rows"),
    ({"question": ["x"] * 39 + ["</span>"]}, "found 39 in 40 rows"),
])
def test_a_sheet_not_of_the_published_form_is_one_input_error(tmp_path, sheet, says):
    import pandas as pd

    from valueharms.sources import pvq40_from_xlsx

    xlsx = tmp_path / "pvq40.xlsx"
    pd.DataFrame(sheet).to_excel(xlsx, index=False)
    with pytest.raises(InputError, match=says):
        pvq40_from_xlsx(xlsx, tmp_path / "pvq40.csv")
    assert not (tmp_path / "pvq40.csv").exists()
