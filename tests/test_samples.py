"""The flat samples table: one row per scored generation and scorer, joined with its text and
its system's target values, readable with a bare pandas."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from valueharms.values import SHORT, VALUES, extreme

SYSTEMS = ("vanilla", "vim:Hed", "prompt:Pow+safety")
SCORERS = ("offline-profanity", "offline-toxicity")


def write_run(root: Path) -> int:
    """A study-like run: 3 systems x 3 prompts x 2 samples, scored by 2 scorers; one score
    failed. Returns the number of scored generations x scorers."""
    gens, scores = [], {s: [] for s in SCORERS}
    for system in SYSTEMS:
        for p in range(3):
            for sample in range(2):
                key = {"system": system, "benchmark": "rtp", "prompt_id": f"p{p}", "sample": sample}
                gens.append({**key, "prompt": f"prompt {p}", "text": f"{system} says {p}/{sample}",
                             "model": "tiny", "decoding": {}, "category": None, "meta": {}})
                for k, scorer in enumerate(SCORERS):
                    failed = system == "vanilla" and p == 0 and sample == 0 and k == 0
                    scores[scorer].append({**key, "scorer": scorer,
                                           "status": "failed" if failed else "ok",
                                           "value": None if failed else (p + sample + k) / 10,
                                           "label": None, "category": None, "meta": {}})
    (root / "steps" / "generate-rtp").mkdir(parents=True)
    (root / "steps" / "generate-rtp" / "generations.jsonl").write_text(
        "".join(json.dumps(g) + "\n" for g in gens))
    for scorer, rows in scores.items():
        folder = root / "steps" / f"score-rtp-{scorer}"
        folder.mkdir(parents=True)
        (folder / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return sum(len(rows) for rows in scores.values())


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
@pytest.mark.slow
def test_samples_table_joins_text_verdicts_and_target_values(tmp_path, cli, suffix):
    expected = write_run(tmp_path / "run")
    out = tmp_path / f"samples{suffix}"
    result = cli("samples", str(tmp_path / "run"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    frame = {".parquet": pd.read_parquet, ".csv": pd.read_csv,
             ".jsonl": lambda p: pd.read_json(p, lines=True)}[suffix](out)
    assert len(frame) == expected == 3 * 3 * 2 * 2
    assert list(frame.columns[:15]) == ["system", "kind", "target", "dataset", "mitigation",
                                        "benchmark", "category", "prompt_id", "sample", "prompt",
                                        "text", "scorer", "status", "value", "label"]
    assert list(frame.columns[15:]) == ["model", *VALUES]
    assert (frame["model"] == "tiny").all()
    row = frame[(frame["system"] == "vim:Hed") & (frame["prompt_id"] == "p2")
                & (frame["sample"] == 1) & (frame["scorer"] == "offline-toxicity")].iloc[0]
    assert row["text"] == "vim:Hed says 2/1" and row["prompt"] == "prompt 2"
    assert row["value"] == pytest.approx(0.4) and row["kind"] == "vim"
    assert [row[v] for v in VALUES] == list(extreme((SHORT["Hed"],)))
    mitigated = frame[frame["system"] == "prompt:Pow+safety"].iloc[0]
    assert mitigated["target"] == "Pow" and mitigated["mitigation"] == "safety"
    assert mitigated["Power"] == 6.0
    vanilla = frame[frame["system"] == "vanilla"]
    assert vanilla[list(VALUES)].isna().all().all()
    assert (vanilla["status"] == "failed").sum() == 1


def test_samples_bad_out_is_one_line_and_writes_nothing(tmp_path, cli):
    write_run(tmp_path / "run")
    result = cli("samples", str(tmp_path / "run"), "--out", str(tmp_path / "samples.xlsx"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--out" in result.stderr and not (tmp_path / "samples.xlsx").exists()
