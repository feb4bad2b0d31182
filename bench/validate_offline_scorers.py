"""Fit judge-offline's three coefficients on one half of PyRIT's labelled rows and measure
every offline scorer on rows it was not fitted on (the numbers in docs/scorers.md).

Labelled data: PyRIT's ``datasets/scorer_evals`` (MIT licence), installed apart from the
project: ``pip install --no-deps --target DIR pyrit==1.1.0``, then
``python bench/validate_offline_scorers.py DIR/pyrit/datasets/scorer_evals``.

- refusal_scorer/refusal.csv: human_score 1 = refused (read flipped: complied = 1);
- objective/*.csv: human_score 1 = the harmful objective was achieved;
- harm/{hate_speech,violence,representational}.csv: graded harm 0-1 (toxicity scorers).

Rows go to the fitting half or the reported half by a hash of the answer text, so the split
is fixed and independent of file order. Writes src/valueharms/data/offline_judge.json.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "valueharms" / "data" / "offline_judge.json"


def read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, skiprows=1)  # the first line is "# dataset_version=..."
    score = next(c for c in df.columns if c.startswith("human_score"))
    return pd.DataFrame({"request": df["objective"].astype(str),
                         "text": df["assistant_response"].astype(str),
                         "label": df[score].astype(float)})


def half(df: pd.DataFrame, which: int) -> pd.DataFrame:
    h = df["text"].map(lambda t: int(hashlib.sha256(t.encode()).hexdigest(), 16) % 2)
    return df[h == which].reset_index(drop=True)


def main(evals: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from valueharms.score import get_scorer
    from valueharms.score.cache import ScoreCache
    from valueharms.score.validate import Columns, validate

    refusal = read(evals / "refusal_scorer" / "refusal.csv")
    refusal["label"] = 1 - refusal["label"]  # complied
    objective = pd.concat([read(p) for p in sorted((evals / "objective").glob("*.csv"))])
    judge_sets = {"refusal (complied)": refusal, "objective achieved": objective}
    fit_rows = pd.concat([half(d, 0) for d in judge_sets.values()], ignore_index=True)

    judge = get_scorer("judge-offline")
    names = sorted(judge.weights)
    feats = judge.features(list(zip(fit_rows["request"], fit_rows["text"])))
    x = np.array([[f[k] for k in names] for f in feats])
    model = LogisticRegression(C=1.0).fit(x, fit_rows["label"] > 0.5)
    fitted = {"weights": dict(zip(names, map(float, model.coef_[0]))),
              "bias": float(model.intercept_[0]),
              "fitted_on": f"PyRIT 1.1.0 scorer_evals refusal.csv + objective/*.csv, hash half 0 "
                           f"({len(fit_rows)} rows); bench/validate_offline_scorers.py"}
    OUT.write_text(json.dumps(fitted, indent=2) + "\n")
    judge.weights, judge.bias = fitted["weights"], fitted["bias"]
    judge.rubric = json.dumps(fitted, sort_keys=True)
    print(f"fitted {fitted}")

    toxicity, regard = get_scorer("offline-toxicity"), get_scorer("offline-regard")
    with tempfile.TemporaryDirectory() as tmp, ScoreCache(Path(tmp) / "c.sqlite") as cache:
        def report(name: str, df: pd.DataFrame, scorer, request: bool, flip: bool = False):
            path = Path(tmp) / f"{abs(hash(name))}.csv"
            df.to_csv(path, index=False)
            columns = Columns("text", "label", "request" if request else None)
            for line in validate(path, [scorer], columns, cache=cache, flip=flip).lines()[1:]:
                print(f"[{name}] {line}")
            if request:
                from valueharms.score.offline import _phrase_hit
                from valueharms.score.validate import _auc

                phrase = df["text"].map(lambda t: float(_phrase_hit(t, judge.phrases) is None))
                print(f"[{name}] phrases alone (no refusal phrase = complied): ROC AUC "
                      f"{_auc(phrase.to_numpy(), df['label'].to_numpy() > 0.5):.3f}")

        for name, df in judge_sets.items():
            report(f"{name}, reported half, n={len(half(df, 1))}", half(df, 1), judge, True)
        for name in ("hate_speech", "violence", "representational"):
            df = read(evals / "harm" / f"{name}.csv")
            report(f"harm/{name} (graded), all rows, n={len(df)}", df, toxicity, False)
            # Regard proxies: higher VADER compound = kinder text, so the harm label is flipped.
            report(f"harm/{name} (graded, flipped), all rows, n={len(df)}", df, regard, False,
                   flip=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
