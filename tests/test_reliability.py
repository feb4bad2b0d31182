"""Scoring under concurrency and in a hostile environment, with real processes: two writers on
one output or one cache lose nothing and duplicate nothing; a full disk, a cut last line, a
damaged cache or a read-only folder each end in one clear line (exit 2) or a logged recovery,
and never leave a half-written result that a re-run takes as done."""
from __future__ import annotations

import ctypes
import os
import random
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_score_faults import check_complete, gens, keyed, read, write

from conftest import ROOT, cli_exe
from fakes import FakePerspective, fake_toxicity
from valueharms.files import exclusive

P_KEY = "pk-RELIABILITY-1"
REMOTE = ["--scorer", "perspective", "--attempts", "3", "--backoff", "0.01", "--timeout", "5",
          "--qps", "0", "--concurrency", "2", "--no-progress"]
OFFLINE = ["--scorer", "offline-toxicity", "--no-progress"]


def score(*args: str, preexec=None, cwd: Path | None = None) -> subprocess.Popen:
    """``valueharms score ...`` as a user starts it; stdout and stderr are pipes."""
    env = {**os.environ, "PERSPECTIVE_API_KEY": P_KEY}
    return subprocess.Popen([str(cli_exe()), "score", *args], env=env, text=True, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def cache_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def assert_scored_by_the_server(records: list[dict], out: Path) -> None:
    rows = read(out)
    check_complete(records, rows)  # every key exactly once
    for row in rows:
        key = (row["system"], row["benchmark"], row["prompt_id"], row["sample"])
        text = keyed(records)[key]["text"]
        assert row["value"] == pytest.approx(fake_toxicity("TOXICITY" + text))


# ----------------------------------------------------------------------------- the suite itself

@pytest.mark.slow
def test_every_test_module_imports_without_the_data(tmp_path):
    """No module reads a data file at import: without the data, collection still finds every
    test (those that need data skip when run, naming the fetch command)."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests")], cwd=tmp_path, text=True, capture_output=True, timeout=600,
        env={**os.environ, "VALUEHARMS_DATA": str(empty)})
    assert result.returncode == 0 and "error" not in result.stdout.lower(), result.stdout[-3000:]


# ----------------------------------------------------------------------------- concurrency

SEEDS = [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.slow
def test_two_score_processes_on_one_output_lose_and_duplicate_nothing(tmp_path, seed):
    """Both start within a seeded moment of each other on the same --in, --out and --cache;
    the second waits for the first's lock, then finds every line written: the server is
    asked once per item, the output holds each item once, the cache is intact."""
    records = gens(80)
    src, out, cache = write(tmp_path / "g.jsonl", records), tmp_path / "s.jsonl", tmp_path / "c.sqlite"
    with FakePerspective(latency=0.03) as srv:
        args = [*REMOTE, "--perspective-url", srv.url, "--in", str(src), "--out", str(out),
                "--cache", str(cache)]
        first = score(*args)
        time.sleep(random.Random(seed).uniform(0, 1.5))
        second = score(*args)
        (rc1, err1), (rc2, err2) = finish(first), finish(second)
        asked = srv.count
    assert rc1 == rc2 == 0, err1 + err2
    assert_scored_by_the_server(records, out)
    assert asked == len(records)  # nothing scored twice
    assert cache_rows(cache) == len(records)


@pytest.mark.parametrize("seed", SEEDS)
def test_two_studies_sharing_one_score_cache(tmp_path, seed):
    """Two outputs (two studies' score steps) over overlapping texts, one cache, at once:
    both outputs complete, every cached verdict is the server's, the cache is intact."""
    rng = random.Random(seed)
    shared = gens(60)
    a = shared + [{**g, "prompt_id": f"a{i}", "text": f"only in a <{i}>"} for i, g in enumerate(gens(20))]
    b = shared + [{**g, "prompt_id": f"b{i}", "text": f"only in b <{i}>"} for i, g in enumerate(gens(20))]
    rng.shuffle(b)
    cache = tmp_path / "shared.sqlite"
    with FakePerspective(latency=0.02) as srv:
        procs = []
        for name, records in (("a", a), ("b", b)):
            src = write(tmp_path / f"{name}.jsonl", records)
            procs.append(score(*REMOTE, "--perspective-url", srv.url, "--in", str(src),
                               "--out", str(tmp_path / name / "scores.jsonl"),
                               "--cache", str(cache)))
            time.sleep(rng.uniform(0, 0.5))
        results = [finish(p) for p in procs]
        asked = srv.count
    assert all(rc == 0 for rc, _ in results), results
    assert_scored_by_the_server(a, tmp_path / "a" / "scores.jsonl")
    assert_scored_by_the_server(b, tmp_path / "b" / "scores.jsonl")
    distinct = len({r["text"] for r in a + b})
    assert cache_rows(cache) == distinct
    # A text both asked for at the same moment may reach the server twice, never more.
    assert distinct <= asked <= distinct + len(shared)


@pytest.mark.slow
def test_a_second_writer_says_who_holds_the_output_and_waits(tmp_path):
    records = gens(10)
    src, out = write(tmp_path / "g.jsonl", records), tmp_path / "s.jsonl"
    waiting = f"{out} is being written by another process (pid {os.getpid()}); waiting"
    with exclusive(out):  # another writer of this output (this test's process)
        proc = score(*OFFLINE, "--in", str(src), "--out", str(out))
        said = ""
        while waiting not in said:  # blocks until the child says it waits (or exits)
            line = proc.stderr.readline()
            assert line, said
            said += line
        time.sleep(2)  # still waiting: nothing written while another process holds the file
        assert proc.poll() is None and (not out.exists() or out.stat().st_size == 0)
    rc, err = finish(proc)
    assert rc == 0, said + err
    check_complete(records, read(out))


# ----------------------------------------------------------------------------- hostile environment

def file_size_limit(limit: int):
    """preexec_fn for a child whose files may not grow past ``limit`` bytes (a full disk)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("limit, cut", [
    # From a warm cache nothing is written to it (its 32 KiB shared-memory file the largest)
    # and the scores file (over 100 kB) reaches the limit.
    (40_000, "the scores file"),
    (6_000, "the cache"),  # a new cache: the SQLite file reaches it first
])
@pytest.mark.slow
def test_disk_full_is_one_line_and_a_rerun_completes(tmp_path, limit, cut):
    records = gens(300, "hexphi")
    src, out = write(tmp_path / "g.jsonl", records), tmp_path / "s.jsonl"
    args = [*OFFLINE, "--in", str(src)]
    rc, err = finish(score(*args, "--out", str(tmp_path / "ref.jsonl"),
                           "--cache", str(tmp_path / "ref.sqlite")))
    assert rc == 0, err
    cache = tmp_path / ("ref.sqlite" if cut == "the scores file" else "c.sqlite")
    rc, err = finish(score(*args, "--out", str(out), "--cache", str(cache),
                           preexec=file_size_limit(limit)))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("valueharms: error: "), err
    assert ("File too large" in err) == (cut == "the scores file"), err
    assert (str(cache) in err) == (cut == "the cache"), err
    assert not out.exists() or len(out.read_bytes()) < limit + 1
    rc, err = finish(score(*args, "--out", str(out), "--cache", str(cache)))
    assert rc == 0, err
    assert sorted(read(out), key=str) == sorted(read(tmp_path / "ref.jsonl"), key=str)


@pytest.mark.slow
def test_a_cut_last_line_is_dropped_with_a_warning_and_scored_again(tmp_path):
    records = gens(30)
    src, out = write(tmp_path / "g.jsonl", records), tmp_path / "s.jsonl"
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(out)))
    assert rc == 0, err
    whole = out.read_bytes()
    out.write_bytes(whole[:whole.rindex(b"\n", 0, -1) + 1 + 40])  # 29 lines and a cut 30th
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(out)))
    assert rc == 0 and "dropped an unfinished last line (40 bytes)" in err, err
    assert out.read_bytes() == whole
    # A cut last line in the input is named and left out, never scored as something else.
    cut = src.read_bytes()
    src.write_bytes(cut[:cut.rindex(b"\n", 0, -1) + 25])
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(tmp_path / "t.jsonl")))
    assert rc == 0 and f"{src}: line 30 is unfinished" in err, err
    check_complete(records[:29], read(tmp_path / "t.jsonl"))


@pytest.mark.slow
def test_a_damaged_cache_is_moved_aside_and_rebuilt(tmp_path):
    records = gens(40)
    src, out, cache = write(tmp_path / "g.jsonl", records), tmp_path / "s.jsonl", tmp_path / "c.sqlite"
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(tmp_path / "ref.jsonl"),
                           "--cache", str(cache)))
    assert rc == 0, err
    data = bytearray(cache.read_bytes())
    data[:100] = os.urandom(100)  # the header: no longer a database
    cache.write_bytes(bytes(data))
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(out), "--cache", str(cache)))
    assert rc == 0, err
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("c.sqlite.corrupt-")]
    assert len(aside) == 1 and f"moved it to {aside[0]}" in err, err
    assert aside[0].read_bytes() == bytes(data)
    assert read(out) == read(tmp_path / "ref.jsonl") and cache_rows(cache) == len(records)


@pytest.mark.slow
def test_a_cache_damaged_inside_stops_with_one_line(tmp_path):
    """The table's leaf pages destroyed, its index intact: opening succeeds, the first lookup
    finds the damage: one line naming the cache, exit 2, no score written; once the cache
    is gone the run completes."""
    records = gens(200)
    src, out, cache = write(tmp_path / "g.jsonl", records), tmp_path / "s.jsonl", tmp_path / "c.sqlite"
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(tmp_path / "ref.jsonl"),
                           "--cache", str(cache)))
    assert rc == 0, err
    with sqlite3.connect(cache) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db.execute("PRAGMA page_size").fetchone()[0]
        leaves = [n for (n,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'results' AND pagetype = 'leaf'")]
    data = bytearray(cache.read_bytes())
    for page in leaves:
        data[(page - 1) * size:page * size] = b"\xff" * size
    cache.write_bytes(bytes(data))
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(out), "--cache", str(cache)))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and f"score cache {cache} is damaged" in err, err
    assert not out.exists() or out.read_text() == ""
    cache.unlink()
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(out), "--cache", str(cache)))
    assert rc == 0 and read(out) == read(tmp_path / "ref.jsonl"), err


def obey_file_modes() -> None:
    """preexec_fn: as root, drop the capabilities that override file modes (for this child
    and what it runs), so a read-only folder is read-only to it as to any user."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.slow
def test_a_read_only_output_folder_is_one_line_and_writes_nothing(tmp_path):
    src = write(tmp_path / "g.jsonl", gens(10))
    readonly = tmp_path / "out"
    readonly.mkdir()
    readonly.chmod(0o555)
    rc, err = finish(score(*OFFLINE, "--in", str(src), "--out", str(readonly / "s.jsonl"),
                           "--cache", str(tmp_path / "c.sqlite"), preexec=obey_file_modes))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert "Permission denied" in err and str(readonly) in err, err
    assert list(readonly.iterdir()) == []
