"""The report's sample browser: the samples table embedded in the page as JSON.

Large runs embed a capped, stratified random sample (at most the same number of rows per
system, benchmark and scorer) and the page says so; every row is in samples.parquet.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_ROWS = 5000  # rows embedded in the page; beyond this the page would get slow to open
FIELDS = ("system", "benchmark", "category", "prompt_id", "sample", "prompt", "text", "scorer",
          "status", "value", "label")
STRATUM = ["system", "benchmark", "scorer"]


@dataclass(frozen=True)
class Browser:
    json: str  # {"fields": [...], "rows": [[...], ...]}, safe inside a <script> element
    note: str


def embedded_rows(samples: pd.DataFrame, cap: int = MAX_ROWS, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """All rows, or at most ``cap`` of them drawn evenly over the strata; and what was kept."""
    if len(samples) <= cap:
        return samples, f"All {len(samples):,} scored samples."
    strata = samples.groupby(STRATUM, sort=False).ngroups
    quota = max(1, math.floor(cap / strata))
    # a random rank within each stratum; the first ``quota`` of each are kept, in file order
    draw = pd.Series(np.random.default_rng(seed).random(len(samples)), index=samples.index)
    kept = samples[draw.groupby([samples[c] for c in STRATUM]).rank(method="first") <= quota]
    return kept, (f"This page holds {len(kept):,} of the run's {len(samples):,} scored samples: "
                  f"a random sample (seed {seed}) of at most {quota} per system, benchmark and "
                  f"scorer. Every row is in samples.parquet beside this page.")


def browser(samples: pd.DataFrame, cap: int = MAX_ROWS, seed: int = 0) -> Browser:
    """The data and note of the sample browser section."""
    rows, note = embedded_rows(samples, cap, seed)
    frame = rows[list(FIELDS)].astype(object).where(rows[list(FIELDS)].notna(), None)
    data = json.dumps({"fields": list(FIELDS), "rows": frame.values.tolist()}, ensure_ascii=True)
    # In a <script> element only "<", ">" and "&" could end it early; \u escapes keep JSON valid.
    safe = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Browser(safe, note)
