"""A study on a real (local) Ray cluster started apart from the driver: API keys reach the
workers only through the task's runtime_env, two score steps run at once, each into its own
cache, merged into the driver's cache afterwards."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("ray")
# Not yet working: on the loaded 2-core machine the separately started head never answered
# `ray status` within 120 s, so the test is skipped until its fixture is fixed (notes/models.md).
pytestmark = [pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skip(reason="the separately started Ray head fixture is not working yet")]

from fakes import FakeJudge  # noqa: E402

KEY = "sk-driver-only-" + uuid.uuid4().hex[:8]

STUDY = """
[study]
name = "cluster"
out = "out"
model = "{model}"
seed = 3

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
    """A Ray head with two CPUs (so two worker processes), started without the API key."""
    port, client = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k != "OPENAI_API_KEY" and not k.startswith("VALUEHARMS_")}
    temp = Path("/tmp") / f"vh-ray-{uuid.uuid4().hex[:6]}"  # Ray's socket paths must be short
    ray = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--num-gpus=0", "--include-dashboard=false", f"--ray-client-server-port={client}",
         f"--temp-dir={temp}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:  # ready once the GCS answers
        probe = subprocess.run([str(ray), "status", f"--address={address}"], env=env,
                               capture_output=True, text=True)
        if probe.returncode == 0:
            break
        time.sleep(2)
    else:
        head.terminate()
        pytest.fail("the Ray head did not start")
    yield address
    head.terminate()  # --block: the head stops the processes it started
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, 9)


def test_keys_travel_in_runtime_env_and_score_caches_merge(cluster, tiny_model_dir, tmp_path):
    cache_root = tmp_path / "driver-cache"
    with FakeJudge() as srv:
        study = tmp_path / "study.toml"
        study.write_text(STUDY.format(model=tiny_model_dir, url=srv.url))
        exe = Path(sys.executable).with_name("valueharms")
        result = subprocess.run(
            [str(exe), "run", str(study), "--executor", "ray", "--ray-address", cluster],
            env={**os.environ, "OPENAI_API_KEY": KEY, "VALUEHARMS_CACHE": str(cache_root)},
            capture_output=True, text=True, timeout=900)
        judged = srv.count
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out" / "steps"
    scores = sorted(out.glob("score/*/scores.jsonl"))
    assert len(scores) == 2
    rows = [line for f in scores for line in f.read_text().splitlines()]
    assert len(rows) == 4 and all('"status": "ok"' in r for r in rows)  # the key was there
    assert judged == 4
    # Each score step cached into its own folder; the driver merged both into its cache.
    for f in scores:
        assert (f.parent / "cache.sqlite").is_file()
    with sqlite3.connect(cache_root / "scores.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 4
    # The key went through the runtime_env, never into a file of the study.
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ".csv", ".md", ".html"):
            assert KEY not in path.read_text(errors="ignore"), path
    assert KEY not in result.stdout + result.stderr
