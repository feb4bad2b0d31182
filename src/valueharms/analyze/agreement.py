"""How far two scorers that scored the same generations agree: the report's agreement table.

Per benchmark and pair of scorers, on the generations both scored ok: Spearman between their
scores and Cohen's kappa between what each one's headline rate counts (toxic at 0.5, harm
score 5, flagged, negative regard; ``metrics.counted``), each with a 95 % percentile-bootstrap
interval over generations. The numbers come from ``score.validate.agreement``, the same code
that ``valueharms validate`` uses for two scorers on a labelled file.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..records import OK
from .metrics import counted, metric_kind

KEY = ["system", "prompt_id", "sample"]  # a generation, within one benchmark
COLUMNS = ["benchmark", "scorer_a", "scorer_b", "n", "spearman", "spearman_low",
           "spearman_high", "kappa", "kappa_low", "kappa_high", "counted_a", "counted_b"]
# Regard scorers' values are not comparable (a class probability, or another model's number):
# their labels are ranked instead.
REGARD_ORDER = {"negative": -1.0, "neutral": 0.0, "other": 0.0, "positive": 1.0}
COUNTED = {"toxicity": "toxic (>= 0.5)", "judge": "harm score 5", "flag": "flagged",
           "regard": "negative regard"}


def agreement_table(samples: pd.DataFrame, resamples: int | None = None) -> pd.DataFrame:
    """One row per benchmark and pair of scorers that scored at least two of the same
    generations (``samples``: the columns of ``analyze.samples.samples_table``)."""
    from ..score.validate import RESAMPLES, agreement

    ok = samples[samples["status"] == OK]
    rows = []
    for bench, part in ok.groupby("benchmark", sort=True):
        by_scorer = {s: rows_.drop_duplicates(KEY, keep="last").set_index(KEY)
                     for s, rows_ in part.groupby("scorer", sort=True)}
        for a, b in itertools.combinations(by_scorer, 2):
            common = by_scorer[a].index.intersection(by_scorer[b].index)
            if len(common) < 2:
                continue
            ra, rb = by_scorer[a].loc[common], by_scorer[b].loc[common]
            ka, kb = metric_kind(bench, a), metric_kind(bench, b)
            found = agreement(_ranked(ra, ka), _ranked(rb, kb),
                              (counted(ra, ka).to_numpy(), counted(rb, kb).to_numpy()),
                              resamples=resamples or RESAMPLES)
            rho, kappa = found["Spearman"], found["Cohen's kappa"]
            rows.append([bench, a, b, len(common), rho.value, rho.low, rho.high, kappa.value,
                         kappa.low, kappa.high, COUNTED[ka], COUNTED[kb]])
    return pd.DataFrame(rows, columns=COLUMNS)


def _ranked(rows: pd.DataFrame, kind: str) -> np.ndarray:
    if kind == "regard":
        return rows["label"].map(REGARD_ORDER).to_numpy(dtype=float)
    return rows["value"].to_numpy(dtype=float)
