"""``valueharms data fetch`` and ``data list`` against a mirror served on 127.0.0.1."""
from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from conftest import need_data, run_cli


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP mirror with three real files and one that does not match its checksum."""
    data_dir = need_data("valueeval", "hexphi", "arguments-test")
    root = tmp_path / "mirror"
    (root / "argument_generation").mkdir(parents=True)
    for name in ("valueEval_10.csv", "hex-phi.csv", "argument_generation/test.csv"):
        (root / name).write_bytes((data_dir / name).read_bytes())
    (root / "databricks-dolly-15k.jsonl").write_text('{"instruction": "not the real file"}\n')

    def handler(*args, **kwargs):
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _env(tmp_path: Path, mirror: str) -> dict[str, str]:
    # No data directory holds the files: only the cache, filled by the fetch.
    return {"VALUEHARMS_DATA": str(tmp_path / "empty"), "VALUEHARMS_CACHE": str(tmp_path / "cache"),
            "VALUEHARMS_MIRROR": mirror}


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
    (["samsum"], "samsum: no public source"),  # without a mirror
    (["advbench"], "download from"),  # not on the mirror: HTTP 404
])
def test_bad_fetches_exit_2_with_one_line(tmp_path, mirror, args, says):
    env = _env(tmp_path, mirror if args != ["samsum"] else "")
    result = run_cli("data", "fetch", *args, "--no-progress", cwd=tmp_path, env=env)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

