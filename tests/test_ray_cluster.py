"""A study on a real (local) Ray cluster started apart from the driver: the API key, set only
in the driver, reaches the workers with the task (not in its runtime_env, which Ray logs) and
lands in no file of the study or of Ray; two score steps run on a two-CPU head, each into its
own cache, merged into the driver's cache afterwards; the driver shows the running steps'
bars, which it reads from their progress files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

from fakes import FakeJudge  # noqa: E402

KEY = "sk-driver-only-" + uuid.uuid4().hex[:8]

STUDY = """
[study]
name = "cluster"
out = "out"
model = "{model}"
seed = 3
threads = 1  # one CPU per step: the two score steps can run at once on the two-CPU head

[systems]
methods = ["vanilla"]

[benchmarks.hexphi]
limit = 2
max_new_tokens = 4

[benchmarks.beavertails]
limit = 2
max_new_tokens = 4

[scorers]
hexphi = "judge-hexphi"
beavertails = "judge-beavertails"

[scorer_options.judge-hexphi]
base_url = "{url}"
judge_model = "judge-x"
attempts = 2

[scorer_options.judge-beavertails]
base_url = "{url}"
judge_model = "judge-x"
attempts = 2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A Ray head with two CPUs (so two worker processes), started without the API key or any
    VALUEHARMS_* variable: its workers cannot inherit them. (Ray's token authentication takes
    its token from RAY_AUTH_TOKEN, which conftest sets, so that neither the head nor the
    driver reads or writes ~/.ray.)"""
    ports = {name: free_port() for name in ("port", "ray-client-server-port",
                                            "dashboard-agent-listen-port")}
    env = {k: v for k, v in os.environ.items()
           if k != "OPENAI_API_KEY" and not k.startswith("VALUEHARMS_")}
    temp = Path("/tmp") / f"vh-ray-{uuid.uuid4().hex[:6]}"  # Ray's socket paths must be short
    ray = Path(sys.executable).with_name("ray")
    log = (tmp_path / "ray-head.log").open("w")
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         *(f"--{name}={port}" for name, port in ports.items()), "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{ports['port']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # ready once the GCS answers
        probe = subprocess.run([str(ray), "status", f"--address={address}"], env=env,
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 or head.poll() is not None:
            break
        time.sleep(2)
    if probe.returncode != 0:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail(f"the Ray head did not start: {(tmp_path / 'ray-head.log').read_text()[-2000:]}"
                    f"\n{probe.stderr[-1000:]}")
    yield address, temp
    os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops the processes it started
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    log.close()
    shutil.rmtree(temp, ignore_errors=True)


def test_keys_travel_in_runtime_env_and_score_caches_merge(cluster, tiny_model_dir, tmp_path):
    address, ray_temp = cluster
    cache_root = tmp_path / "driver-cache"
    with FakeJudge() as srv:
        harm_score = srv.reply  # HEx-PHI's 1-5 score; BeaverTails' judge answers in one word

        def slow_reply(prompt: str) -> str:
            # Long enough for a score step's bar to reach its progress file and the driver.
            time.sleep(3)
            return ("unflagged: fake judge" if '"flagged" or "unflagged"' in prompt
                    else harm_score(prompt))

        srv.reply = slow_reply
        study = tmp_path / "study.toml"
        study.write_text(STUDY.format(model=tiny_model_dir, url=srv.url))
        exe = Path(sys.executable).with_name("valueharms")
        result = subprocess.run(
            [str(exe), "run", str(study), "--executor", "ray", "--ray-address", address],
            env={**os.environ, "OPENAI_API_KEY": KEY, "VALUEHARMS_CACHE": str(cache_root)},
            capture_output=True, text=True, timeout=900)
        sent = [r["headers"].get("authorization") for r in srv.requests]
    assert result.returncode == 0, result.stderr[-3000:]
    # Not a terminal: one plain line per running score step (not one per poll), then its
    # "done" line. The step's own bar went to the worker's stderr, which the driver hides.
    lines = result.stderr.splitlines()
    for step in (p.parent.name for p in (tmp_path / "out" / "steps").glob("score/*/manifest.json")):
        bar = [n for n, line in enumerate(lines) if line.startswith(f"score/{step}: ")]
        done = [n for n, line in enumerate(lines) if f"] score/{step} done in " in line]
        assert len(bar) == 1 and "/2 [" in lines[bar[0]], result.stderr
        assert len(done) == 1 and bar[0] < done[0], result.stderr
    assert not list((tmp_path / "out").rglob(".progress.json"))
    # The workers, started by the head without the key, sent it: it came in the runtime_env.
    assert sent == [f"Bearer {KEY}"] * 4
    out = tmp_path / "out" / "steps"
    scores = sorted(out.glob("score/*/scores.jsonl"))
    assert len(scores) == 2
    rows = [json.loads(line) for f in scores for line in f.read_text().splitlines()]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    # Each score step cached into its own folder; the driver merged both into its cache.
    texts = set()
    for f in scores:
        with sqlite3.connect(f.parent / "cache.sqlite") as db:
            texts |= {row[0] for row in db.execute("SELECT key FROM results")}
    assert len(texts) == 4
    with sqlite3.connect(cache_root / "scores.sqlite") as db:
        assert {row[0] for row in db.execute("SELECT key FROM results")} == texts
    # The key went through the runtime_env, never into a file or log of the study.
    files = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    assert any(path.name == "log.txt" for path in files)
    assert [path for path in files if KEY.encode() in path.read_bytes()] == []
    assert KEY not in result.stdout + result.stderr
    # Nor into Ray's own files: its runtime_env agent logs every runtime_env in plain text.
    assert [path for path in ray_temp.rglob("*")
            if path.is_file() and KEY.encode() in path.read_bytes()] == []
