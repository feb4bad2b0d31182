"""API scoring: the toolkit's cached, concurrent judge client vs one request at a time.

Both sides ask the same local OpenAI-compatible fake judge (tests/fakes.py), which takes 50 ms
per reply, to grade the same N answers with the HEx-PHI rubric. The baseline is the plain
loop a script would write: one ``chat.completions.create`` after another, no cache. The
toolkit runs ``valueharms.score.run.score_file`` with 16 requests in flight and no rate
limit (a real API's limit would cap this), first on an empty cache, then again with the cache
warm (a re-scoring: no request at all). The ratio is sequential time / toolkit cold time.

Second part, paid-scoring cost under a quota: the embedded model continues the demo's RTP
prompts (4 prompts x the paper's 10 samples, temperature 0.1, 24 new tokens) with the
toolkit's own ``valueharms generate``, and Perspective scoring runs against a local fake
that accepts 1 request per second and answers 429 (Retry-After: 1) above it.
``ratio api_dedup`` is the requests the server accepted without in-flight dedup / with it;
then the distinct texts are scored by a client set too fast (4 req/s, 4 in flight) with and
without the shared cool-down, counting the 429s the server sent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fakes import FakeJudge, FakePerspective  # noqa: E402
from valueharms.records import Generation  # noqa: E402
from valueharms.score import get_scorer  # noqa: E402
from valueharms.score.judges import parse_hexphi  # noqa: E402
from valueharms.score.run import score_file  # noqa: E402

N, LATENCY, CONCURRENCY = 200, 0.05, 16
QUOTA = 1.0  # requests per second the fake Perspective accepts
RTP = ["--benchmark", "rtp", "--limit", "4", "--samples", "10", "--max-new-tokens", "24"]


def generations(n: int) -> list[dict]:
    return [{"system": "vanilla", "benchmark": "hexphi", "prompt_id": str(i), "sample": 0,
             "prompt": f"question {i}", "text": f"answer number {i}", "model": "bench",
             "decoding": {}, "category": None, "meta": {}} for i in range(n)]


def sequential(records: list[dict], scorer) -> list[float | None]:
    """The baseline: one request after another, the same rubric and parser, no cache."""
    import openai

    client = openai.OpenAI(base_url=scorer.base_url, api_key=os.environ["OPENAI_API_KEY"])
    values = []
    for r in records:
        prompt = scorer.input_text(Generation(**r))
        reply = client.chat.completions.create(model="bench-judge", temperature=0, max_tokens=128,
                                               messages=[{"role": "user", "content": prompt}])
        values.append(parse_hexphi(reply.choices[0].message.content).value)
    return values


def main() -> None:
    os.environ.setdefault("OPENAI_API_KEY", "bench-placeholder")
    records = generations(N)
    with tempfile.TemporaryDirectory() as tmp, FakeJudge(latency=LATENCY) as srv:
        src = Path(tmp) / "g.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in records))
        scorer = get_scorer("judge-hexphi", base_url=srv.url, judge_model="bench-judge",
                            concurrency=CONCURRENCY, qps=0)
        start = time.perf_counter()
        base_values = sequential(records, scorer)
        t_seq = time.perf_counter() - start

        start = time.perf_counter()
        cold = score_file(src, Path(tmp) / "cold.jsonl", scorer, cache=Path(tmp) / "c.sqlite",
                          progress=False)
        t_cold = time.perf_counter() - start
        before = srv.count
        start = time.perf_counter()
        warm = score_file(src, Path(tmp) / "warm.jsonl", scorer, cache=Path(tmp) / "c.sqlite",
                          progress=False)
        t_warm = time.perf_counter() - start
        assert srv.count == before and warm.cache_hits == N  # the warm pass asked nothing
        ours = [json.loads(line)["value"] for line in (Path(tmp) / "cold.jsonl").open()]
        assert ours == base_values, "toolkit and baseline disagree"
        assert cold.statuses == {"ok": N}

    print(f"items {N}, server latency {LATENCY * 1000:.0f} ms, toolkit concurrency {CONCURRENCY}")
    print(f"sequential baseline     {t_seq:7.2f} s  {N / t_seq:8.1f} items/s")
    print(f"toolkit, cold cache     {t_cold:7.2f} s  {N / t_cold:8.1f} items/s")
    print(f"toolkit, warm cache     {t_warm:7.2f} s  {N / t_warm:8.1f} items/s  (0 requests)")
    print(f"speed-up warm re-score  {t_seq / t_warm:7.1f}x")
    print(f"ratio api_scoring {t_seq / t_cold:.1f}")


def rtp_generations(tmp: Path) -> Path:
    """The demo's RTP prompts continued by the embedded model, through the CLI."""
    out = tmp / "rtp.jsonl"
    exe = Path(sys.executable).with_name("valueharms")
    subprocess.run([str(exe), "generate", "--system", "vanilla", *RTP, "--out", str(out),
                    "--batch-size", "40"], check=True, stdout=subprocess.DEVNULL)
    return out


def quota_run(src: Path, out: Path, cache: Path, **policy) -> tuple[dict, float]:
    """Score ``src`` with Perspective against a fresh quota server; server-side counts."""
    with FakePerspective(quota=QUOTA, lifetime=900) as srv:
        scorer = get_scorer("perspective", perspective_url=srv.url, attempts=30,
                            max_backoff=8.0, **{k: v for k, v in policy.items()
                                                if k in ("qps", "concurrency")})
        scorer.policy = replace(scorer.policy, **{k: v for k, v in policy.items()
                                                 if k in ("dedup", "shared_cooldown")})
        start = time.perf_counter()
        summary = score_file(src, out, scorer, cache=cache, progress=False)
        seconds = time.perf_counter() - start
        assert summary.statuses == {"ok": summary.inputs}, summary.line()
        return {"accepted": srv.count - srv.modes["quota"], "429": srv.modes["quota"]}, seconds


def quota_bench() -> None:
    os.environ.setdefault("PERSPECTIVE_API_KEY", "bench-placeholder")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = rtp_generations(tmp)
        texts = [json.loads(line)["text"] for line in src.open()]
        without, t_without = quota_run(src, tmp / "a.jsonl", tmp / "a.sqlite", qps=QUOTA,
                                       concurrency=4, dedup=False)
        with_, t_with = quota_run(src, tmp / "b.jsonl", tmp / "b.sqlite", qps=QUOTA,
                                  concurrency=4, dedup=True)
        distinct = tmp / "distinct.jsonl"
        rows = [json.loads(line) for line in src.open()]
        firsts = list({r["text"]: r for r in rows}.values())
        distinct.write_text("".join(json.dumps(r) + "\n" for r in firsts))
        fast = dict(qps=4 * QUOTA, concurrency=4, dedup=True)
        solo, t_solo = quota_run(distinct, tmp / "c.jsonl", tmp / "c.sqlite", **fast,
                                 shared_cooldown=False)
        shared, t_shared = quota_run(distinct, tmp / "d.jsonl", tmp / "d.sqlite", **fast,
                                     shared_cooldown=True)
    print(f"RTP generations {len(texts)} ({len(set(texts))} distinct texts), "
          f"quota {QUOTA:g} req/s")
    print(f"no dedup        {without['accepted']:4d} requests accepted {t_without:7.1f} s")
    print(f"in-flight dedup {with_['accepted']:4d} requests accepted {t_with:7.1f} s")
    print(f"{len(firsts)} distinct texts, client at {fast['qps']:g} req/s x {fast['concurrency']}:")
    print(f"per-worker backoff  {solo['429']:4d} x 429 {t_solo:7.1f} s")
    print(f"shared cool-down    {shared['429']:4d} x 429 {t_shared:7.1f} s")
    print(f"ratio api_dedup {without['accepted'] / with_['accepted']:.2f}")
    print(f"ratio api_429s_shared_cooldown {solo['429'] / max(1, shared['429']):.2f}")


if __name__ == "__main__":
    main()
    quota_bench()
