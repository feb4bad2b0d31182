"""Remote scorers under injected faults (local fake servers on 127.0.0.1): no crash, no lost
item, no invented number, retries counted, the cache spares repeat calls, keys never leak,
and a scoring run killed with SIGKILL resumes to the uninterrupted result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from fakes import FakeJudge, FakePerspective, fake_harm, fake_toxicity
from valueharms.score import get_scorer
from valueharms.score.run import score_file

FAST = dict(attempts=4, backoff=0.01, max_backoff=0.05, timeout=0.4, qps=0, concurrency=6)
# A storm can land on any item, so tests that mix one with scripted faults allow enough tries
# that only the items scripted to fail every time (20 faults) end as failed.
STORMY = {**FAST, "attempts": 20}
P_KEY, O_KEY = "pk-TESTKEY-7f3a9c", "sk-TESTKEY-b41d27"


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("PERSPECTIVE_API_KEY", P_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", O_KEY)


def gens(n: int, benchmark: str = "rtp") -> list[dict]:
    return [{"system": "vanilla", "benchmark": benchmark, "prompt_id": f"p{i}", "sample": i % 2,
             "prompt": f"Q{i}", "text": f"reply <{i}> words", "model": "m", "decoding": {},
             "category": f"c{i % 3}", "meta": {"question": f"question {i}?"}} for i in range(n)]


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def keyed(rows: list[dict]) -> dict:
    return {(r["system"], r["benchmark"], r["prompt_id"], r["sample"]): r for r in rows}


def check_complete(records: list[dict], rows: list[dict]) -> None:
    """Every input key exactly once; a number only on ok rows."""
    want = Counter((g["system"], g["benchmark"], g["prompt_id"], g["sample"]) for g in records)
    got = Counter((r["system"], r["benchmark"], r["prompt_id"], r["sample"]) for r in rows)
    assert got == want
    for r in rows:
        assert (r["value"] is not None) == (r["status"] == "ok"), r


# Per-item fault histories; "<7>" exhausts 4 attempts on 500s and must end as failed.
P_SCRIPT = {"<1>": ["429", "429"], "<2>": ["500", "503"], "<3>": ["slow"], "<4>": ["truncated"],
            "<5>": ["malformed", "malformed"], "<6>": ["unsupported"], "<7>": ["500"] * 20,
            "<8>": ["bad-request"], "<9>": ["slow", "truncated", "malformed"]}


@pytest.mark.slow
def test_perspective_under_faults_then_cached(tmp_path):
    records = gens(30) + [{**gens(1)[0], "prompt_id": "empty", "text": "  "}]
    src = write(tmp_path / "g.jsonl", records)
    with FakePerspective(storm=["429"] * 12, script=P_SCRIPT, slow_seconds=1.0) as srv:
        scorer = get_scorer("perspective", perspective_url=srv.url, **STORMY)
        s = score_file(src, tmp_path / "s.jsonl", scorer, cache=tmp_path / "c.sqlite",
                       progress=False)
        rows = read(tmp_path / "s.jsonl")
        check_complete(records, rows)
        by_id = {r["prompt_id"]: r for r in rows}
        assert by_id["p7"]["status"] == "failed" and "500" in by_id["p7"]["raw"]
        assert by_id["p8"]["status"] == "failed" and "HTTP 400" in by_id["p8"]["raw"]
        assert by_id["p6"]["status"] == "unscorable" and "LANGUAGE" not in (by_id["p6"]["label"] or "")
        assert by_id["empty"]["status"] == "unscorable"
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) == 27  # 30 - p6, p7, p8
        for r in ok:  # exactly the server's number, never a made-up one
            assert r["value"] == fake_toxicity("TOXICITY" + f"reply <{r['prompt_id'][1:]}> words")
            assert r["scorer"] == "perspective:TOXICITY"
        injected = sum(n for mode, n in srv.modes.items() if mode != "ok")
        assert injected >= 12 + 14  # the storm plus the scripted faults
        # Every request is counted; each of the 30 sent items ends on its last request.
        assert s.requests == srv.count and s.retries == srv.count - 30
        assert all(r["headers"].get("x-goog-api-key") == P_KEY for r in srv.requests)
        assert all(P_KEY not in r["path"] for r in srv.requests)  # never in the URL

        # A fresh output with the same cache: only the failed items reach the server again.
        before = srv.count
        s2 = score_file(src, tmp_path / "s2.jsonl", scorer, cache=tmp_path / "c.sqlite",
                        progress=False)
        asked = {q["text"] for q in srv.requests[before:]}
        assert asked == {"reply <7> words", "reply <8> words"} and s2.cache_hits == 29
        assert read(tmp_path / "s2.jsonl")[8]["status"] == "ok"  # p8's bad request is gone now
        # And a third time nothing at all is asked.
        before = srv.count
        score_file(src, tmp_path / "s3.jsonl", scorer, cache=tmp_path / "c.sqlite", progress=False)
        assert srv.count == before


def test_perspective_server_down_is_failed_not_lost(tmp_path):
    srv = FakePerspective()
    with srv:
        url = srv.url
    records = gens(3)
    src = write(tmp_path / "g.jsonl", records)
    scorer = get_scorer("perspective", perspective_url=url, **FAST)
    s = score_file(src, tmp_path / "s.jsonl", scorer, cache=tmp_path / "c.sqlite", progress=False)
    rows = read(tmp_path / "s.jsonl")
    check_complete(records, rows)
    assert {r["status"] for r in rows} == {"failed"} and s.retries == 3 * 3


def test_perspective_rate_limit_spaces_requests(tmp_path):
    src = write(tmp_path / "g.jsonl", gens(6))
    with FakePerspective() as srv:
        scorer = get_scorer("perspective", perspective_url=srv.url, qps=10, concurrency=4)
        start = time.monotonic()
        score_file(src, tmp_path / "s.jsonl", scorer, cache=tmp_path / "c.sqlite", progress=False)
        # 6 requests at 10/s cannot all start within less than 5 intervals.
        assert time.monotonic() - start >= 5 * 0.1 * 0.9 and srv.count == 6


J_SCRIPT = {"<1>": ["429", "500"], "<2>": ["slow"], "<3>": ["truncated"], "<4>": ["malformed"],
            "<5>": ["noscore"], "<6>": ["noscore"], "<7>": ["503"] * 20, "<8>": ["bad-request"]}


def test_hexphi_judge_under_faults_and_retry_unparsed(tmp_path):
    records = gens(20, "hexphi")
    src = write(tmp_path / "g.jsonl", records)
    out = tmp_path / "s.jsonl"
    with FakeJudge(storm=["429"] * 8, script=J_SCRIPT, slow_seconds=1.0) as srv:
        scorer = get_scorer("judge-hexphi", base_url=srv.url, judge_model="fake-judge", **STORMY)
        s = score_file(src, out, scorer, cache=tmp_path / "c.sqlite", progress=False)
        rows = read(out)
        check_complete(records, rows)
        status = {r["prompt_id"]: r["status"] for r in rows}
        assert status["p5"] == status["p6"] == "unparsed"
        assert status["p7"] == status["p8"] == "failed"
        assert [r["raw"] for r in rows if r["status"] == "unparsed"] == \
            ["I would rather not grade this one."] * 2
        for r in rows:
            if r["status"] == "ok":  # the judge's own number, parsed from its reply
                assert r["value"] == float(r["raw"].split()[1])
                assert r["raw"].startswith("score: ") and r["meta"]["reason"] == "fake judge"
                assert r["scorer"] == "judge-hexphi:fake-judge"
        assert s.requests == srv.count and s.retries == srv.count - 20
        assert any("[REQUEST]\nquestion 3?\n" in q["text"] for q in srv.requests)
        assert all(q["headers"].get("authorization") == f"Bearer {O_KEY}" for q in srv.requests)

        # A plain re-run does nothing; --retry-unparsed asks p5 and p6 again (not cached).
        before = srv.count
        again = score_file(src, out, scorer, cache=tmp_path / "c.sqlite", progress=False)
        assert srv.count == before and again.skipped == 20
        again = score_file(src, out, scorer, cache=tmp_path / "c.sqlite", retry=("unparsed",),
                           progress=False)
        assert srv.count - before == 2 and again.statuses == {"ok": 2}
        latest = keyed(read(out))  # the later line for a key wins
        assert latest[("vanilla", "hexphi", "p5", 1)]["status"] == "ok"
        assert len(read(out)) == 22


def test_judge_values_match_the_server(tmp_path):
    records = gens(8, "hexphi")
    src = write(tmp_path / "g.jsonl", records)
    with FakeJudge() as srv:
        scorer = get_scorer("judge-hexphi", base_url=srv.url, judge_model="j", **FAST)
        score_file(src, tmp_path / "s.jsonl", scorer, cache=tmp_path / "c.sqlite", progress=False)
        sent = {q["text"]: fake_harm(q["text"]) for q in srv.requests}
    rows = read(tmp_path / "s.jsonl")
    assert sorted(r["value"] for r in rows) == sorted(float(v) for v in sent.values())


def test_beavertails_judge_strict_flags(tmp_path):
    replies = {"<0>": "flagged: gives instructions", "<1>": "unflagged, it refuses",
               "<2>": "Not flagged.", "<3>": "The answer is flagged"}

    def reply(prompt: str) -> str:
        return next(v for k, v in replies.items() if k in prompt)

    records = gens(4, "beavertails")
    src = write(tmp_path / "g.jsonl", records)
    with FakeJudge(reply=reply) as srv:
        scorer = get_scorer("judge-beavertails", base_url=srv.url, judge_model="j", **FAST)
        score_file(src, tmp_path / "s.jsonl", scorer, cache=tmp_path / "c.sqlite", progress=False)
    rows = {r["prompt_id"]: r for r in read(tmp_path / "s.jsonl")}
    assert (rows["p0"]["label"], rows["p0"]["value"]) == ("flagged", 1.0)
    assert (rows["p1"]["label"], rows["p1"]["value"]) == ("unflagged", 0.0)
    assert rows["p2"]["status"] == rows["p3"]["status"] == "unparsed"
    assert rows["p2"]["value"] is None and rows["p2"]["label"] is None


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("valueharms")
    return subprocess.run([str(exe), "score", *args], env={**os.environ, **env}, text=True,
                          capture_output=True, timeout=300)


@pytest.mark.slow
def test_cli_keys_never_leak(tmp_path):
    out_dir = tmp_path / "out"
    src = write(tmp_path / "g.jsonl", gens(12, "hexphi"))
    env = {"PERSPECTIVE_API_KEY": P_KEY, "OPENAI_API_KEY": O_KEY,
           "VALUEHARMS_CACHE": str(out_dir / "cache")}
    fast = ["--attempts", "3", "--backoff", "0.01", "--max-backoff", "0.02", "--timeout", "0.4",
            "--qps", "0", "--verbose", "--no-progress"]
    logs = []
    with FakePerspective(storm=["429", "500", "bad-request"], script=P_SCRIPT) as srv:
        r = _cli("--scorer", "perspective", "--perspective-url", srv.url, "--in", str(src),
                 "--out", str(out_dir / "tox.jsonl"), *fast, env=env)
        assert r.returncode == 0, r.stderr
        assert any(q["headers"].get("x-goog-api-key") == P_KEY for q in srv.requests)
        logs += [r.stdout, r.stderr]
    with FakeJudge(storm=["500", "bad-request"], script=J_SCRIPT) as srv:
        r = _cli("--scorer", "judge-hexphi", "--base-url", srv.url, "--judge-model", "j",
                 "--in", str(src), "--out", str(out_dir / "judge.jsonl"), *fast, env=env)
        assert r.returncode == 0, r.stderr
        logs += [r.stdout, r.stderr]
    assert "retrying" in "".join(logs) and "failed" in "".join(logs)  # the logs did talk
    files = [p for p in out_dir.rglob("*") if p.is_file()]
    assert len(files) >= 3
    for blob in [p.read_bytes() for p in files] + [s.encode() for s in logs]:
        for key in (P_KEY, O_KEY, "TESTKEY"):
            assert key.encode() not in blob


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, seed):
    import random

    records = gens(30)
    src = write(tmp_path / "g.jsonl", records)
    args = ["--scorer", "perspective", "--in", str(src), "--attempts", "3", "--backoff", "0.01",
            "--timeout", "2", "--qps", "0", "--concurrency", "2", "--no-progress"]
    with FakePerspective(latency=0.1, script={"<5>": ["500"] * 100}) as srv:
        args += ["--perspective-url", srv.url]  # p5 fails in every run alike
        env = {**os.environ, "VALUEHARMS_CACHE": str(tmp_path / f"cache-{seed}")}
        ref = _cli(*args, "--out", str(tmp_path / "ref.jsonl"),
                   env={"VALUEHARMS_CACHE": str(tmp_path / "ref-cache")})
        assert ref.returncode == 0, ref.stderr
        out = tmp_path / "out.jsonl"
        exe = Path(sys.executable).with_name("valueharms")
        proc = subprocess.Popen([str(exe), "score", *args, "--out", str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop_at = random.Random(seed).randint(3, 20)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_text().count("\n") >= stop_at:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert out.read_text().count("\n") < 30  # killed part-way
        r = _cli(*args, "--out", str(out), env=env)
        assert r.returncode == 0, r.stderr
    rows = read(out)
    check_complete(records, rows)
    got, want = keyed(rows), keyed(read(tmp_path / "ref.jsonl"))
    for key, ref_row in want.items():  # the same verdicts; a failure may carry other wording
        assert (got[key]["status"], got[key]["value"]) == (ref_row["status"], ref_row["value"])


def test_identical_texts_are_asked_once(tmp_path):
    """RTP samples repeat: 12 generations with 3 distinct texts cost 3 requests, and every
    copy gets the server's own number for its text."""
    records = gens(12, "hexphi")
    for i, r in enumerate(records):
        r["text"] = f"reply <{i % 3}> words"
        r["meta"] = {"question": "the same question?"}
    src = write(tmp_path / "g.jsonl", records)
    with FakeJudge(latency=0.2) as srv:
        scorer = get_scorer("judge-hexphi", base_url=srv.url, judge_model="j", **FAST)
        s = score_file(src, tmp_path / "s.jsonl", scorer, cache=tmp_path / "c.sqlite",
                       progress=False)
        assert srv.count == 3 and s.requests == 3 and s.deduplicated + s.cache_hits == 9
        by_text = {q["text"]: fake_harm(q["text"]) for q in srv.requests}
    rows = read(tmp_path / "s.jsonl")
    check_complete(records, rows)
    assert {r["value"] for r in rows} <= {float(v) for v in by_text.values()}
    assert len({(r["value"], records[i]["text"]) for i, r in enumerate(rows)}) == 3


def test_cool_down_holds_every_thread_then_the_rate_recovers():
    from valueharms.score.client import RateLimiter

    limiter = RateLimiter(qps=0)
    limiter.cool_down(0.3, slowest=1.0)
    started = []

    def worker():
        limiter.wait()
        started.append(time.monotonic())

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert min(started) - t0 >= 0.3 * 0.9  # nobody went during the pause
    assert limiter.interval > 0  # the rate was lowered ...
    for _ in range(1000):
        limiter.succeeded()
    assert limiter.interval == limiter.base == 0  # ... and recovered


@pytest.mark.slow
def test_quota_server_rate_limits_are_shared(tmp_path):
    """Against a 5 req/s quota with unlimited client qps, the 429s turn into shared cool-downs
    (counted, shown in the summary) and every item still ends ok."""
    records = gens(12, "hexphi")
    src = write(tmp_path / "g.jsonl", records)
    with FakeJudge(quota=5) as srv:
        scorer = get_scorer("judge-hexphi", base_url=srv.url, judge_model="j",
                            **{**FAST, "attempts": 20, "max_backoff": 1.0})
        s = score_file(src, tmp_path / "s.jsonl", scorer, cache=tmp_path / "c.sqlite",
                       progress=False)
        assert srv.modes["quota"] >= 1 and s.cooldowns == srv.modes["quota"]
    check_complete(records, read(tmp_path / "s.jsonl"))
    assert s.statuses == {"ok": 12} and "cool-downs" in s.line()
