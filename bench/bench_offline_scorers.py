"""Offline scorer throughput: texts per second for each scorer that needs no key or network.

Each scorer is loaded once (load time printed apart) and then scores the same 512 texts,
the answers of the labelled test fixture (tests/data/labelled.csv) repeated, in its own batch
size, through ``score_batch`` (no cache: the model's work only).
"""
from __future__ import annotations

import time
from pathlib import Path

from valueharms.records import Generation
from valueharms.score import get_scorer
from valueharms.score.validate import Columns, read_labelled

ROOT = Path(__file__).resolve().parents[1]
N = 512
SCORERS = ("offline-toxicity", "offline-regard", "judge-offline")


def items(scorer) -> list[tuple[Generation, str]]:
    rows = read_labelled(ROOT / "tests" / "data" / "labelled.csv", Columns("text", "toxic", "request"))
    gens = [Generation(system="bench", benchmark="hexphi", prompt_id=str(i), sample=0,
                       prompt="", text=rows.texts[i % len(rows.texts)], model="", decoding={},
                       meta={"question": rows.requests[i % len(rows.texts)]}) for i in range(N)]
    return [(g, scorer.input_text(g)) for g in gens]


def main() -> None:
    for name in SCORERS:
        start = time.perf_counter()
        scorer = get_scorer(name)
        loaded = time.perf_counter() - start
        work = items(scorer)
        start = time.perf_counter()
        for i in range(0, N, scorer.batch_size):
            scorer.score_batch(work[i:i + scorer.batch_size])
        seconds = time.perf_counter() - start
        print(f"{scorer.name:45s} load {loaded:6.1f} s  {N / seconds:8.1f} texts/s")


if __name__ == "__main__":
    main()
