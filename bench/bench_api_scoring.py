"""API scoring: the toolkit's cached, concurrent judge client vs one request at a time.

Both sides ask the same local OpenAI-compatible fake judge (tests/fakes.py), which takes 50 ms
per reply, to grade the same N answers with the HEx-PHI rubric. The baseline is the plain
loop a script would write: one ``chat.completions.create`` after another, no cache. The
toolkit runs ``valueharms.score.run.score_file`` with 16 requests in flight and no rate
limit (a real API's limit would cap this), first on an empty cache, then again with the cache
warm (a re-scoring: no request at all). The ratio is sequential time / toolkit cold time.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fakes import FakeJudge  # noqa: E402

from valueharms.records import Generation  # noqa: E402
from valueharms.score import get_scorer  # noqa: E402
from valueharms.score.judges import parse_hexphi  # noqa: E402
from valueharms.score.run import score_file  # noqa: E402

N, LATENCY, CONCURRENCY = 200, 0.05, 16


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


if __name__ == "__main__":
    main()
