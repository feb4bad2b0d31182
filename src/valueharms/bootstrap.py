"""Percentile-bootstrap pieces shared by every layer that reports an interval: how often each
unit is drawn in each resample, and the percentile interval of resampled values. Scoring
(``score.validate``), the analysis (``analyze.intervals``, ``analyze.stats``) and the
alignment check all read their intervals here, so they agree on what "95 %" means.
"""
from __future__ import annotations

import warnings

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 1000


def percentile_interval(values: np.ndarray,
                        confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of resampled values along axis 0 (NaN resamples ignored):
    arrays of lower and upper ends, one per column (0-d for a 1-d input)."""
    alpha = 1.0 - confidence
    with warnings.catch_warnings():  # an all-NaN column is a metric with no units: NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return low, high


def unit_weights(n_units: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each unit is drawn in each resample (resamples x n_units)."""
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=resamples).astype(float)
