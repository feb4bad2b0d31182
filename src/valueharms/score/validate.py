"""How far to trust a scorer: score a file of texts labelled by others and measure agreement.

``validate(path, scorers, columns)`` reads a labelled CSV or JSONL (a leading ``# ...`` line,
as PyRIT's scorer_evals files have, is skipped), scores every row with each scorer through
the usual cache, and reports n, ROC AUC and Spearman's rho with 95 % percentile-bootstrap
intervals, and accuracy at the scorer's threshold. With two scorers the same resamples give
the paired difference, and the two scorers' agreement with each other (Cohen's kappa at
their thresholds, Spearman between their scores).

Higher scores must mean "more of the labelled property" (toxic, harmful, complied); a file
whose label means the opposite (e.g. 1 = refused) is read with ``flip=True``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import sources
from ..bootstrap import RESAMPLES, percentile_interval
from ..errors import InputError
from ..records import OK, Generation
from .base import Scorer
from .cache import ScoreCache

SEED = 0
BENCHMARK = "validate"  # benchmark name given to the rows: judges use their 1-5 scale


@dataclass(frozen=True)
class Columns:
    """Which columns hold the scored text, the label and (for judges) the request."""

    text: str = "text"
    label: str = "label"
    request: str | None = None


@dataclass(frozen=True)
class Labelled:
    """The rows of a labelled file: texts, numeric labels, optional requests."""

    texts: list[str]
    labels: np.ndarray
    requests: list[str] | None


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass
class ScorerResult:
    """One scorer on the rows it scored ok; NaN metrics when they are undefined."""

    scorer: str
    n: int
    not_scored: int
    auc: Interval
    spearman: Interval
    threshold: float | None
    accuracy: float | None
    values: np.ndarray = field(repr=False)


@dataclass
class Report:
    path: str
    n: int
    positive_above: float
    results: list[ScorerResult]
    paired: dict[str, Interval] = field(default_factory=dict)  # B minus A
    agreement: dict[str, Interval] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """What the command prints: every number next to the scorer that produced it."""
        out = [f"{self.path}: {self.n} labelled rows; AUC counts label > "
               f"{self.positive_above:g} as positive; 95 % bootstrap intervals "
               f"({RESAMPLES} resamples)"]
        for r in self.results:
            acc = (f"accuracy {r.accuracy:.3f} at threshold {r.threshold:g}"
                   if r.accuracy is not None else "accuracy: no threshold (give --threshold)")
            out.append(f"{r.scorer}: n {r.n} (not scored {r.not_scored}); ROC AUC {r.auc}; "
                       f"Spearman {r.spearman}; {acc}")
        if self.paired:
            a, b = (r.scorer for r in self.results)
            out.append(f"{b} minus {a} (same rows): "
                       + "; ".join(f"{k} {v}" for k, v in self.paired.items()))
            out.append(f"{a} vs {b} agreement: "
                       + "; ".join(f"{k} {v}" for k, v in self.agreement.items()))
        return out


def read_labelled(path: str | Path, columns: Columns, flip: bool = False) -> Labelled:
    """The labelled rows of a CSV or JSONL file; InputError naming file, row and column."""
    path = Path(path)
    wanted = [c for c in (columns.text, columns.label, columns.request) if c]
    if path.suffix.lower() == ".jsonl":
        records = [r for _, r in sources.read_jsonl_lines(path)]
        if not all(isinstance(r, dict) for r in records):
            raise InputError(f"{path}: every line must be a JSON object")
        df = pd.DataFrame.from_records(records)
        df = df.astype({c: str for c in df.columns if c in wanted and df[c].notna().all()})
    else:
        text = sources.read_text(path)
        lines = text.splitlines(keepends=True)
        skip = next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
        try:
            df = pd.read_csv(io.StringIO("".join(lines[skip:])), dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise InputError(f"{path}: no header line") from None
        except pd.errors.ParserError as exc:
            raise InputError(f"{path}: malformed table ({str(exc).strip()})") from None
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(found {', '.join(map(str, df.columns)) or 'none'})")
    if df.empty:
        raise InputError(f"{path}: no labelled rows")
    df = df.reset_index(drop=True)
    labels = sources.to_numbers(path, df.astype({columns.label: str}), [columns.label])[:, 0]
    if len(np.unique(labels)) < 2:
        raise InputError(f"{path}: column {columns.label!r}: every row has the label "
                         f"{labels[0]:g}; AUC needs two kinds")
    if flip:
        labels = labels.min() + labels.max() - labels
    return Labelled(texts=df[columns.text].astype(str).tolist(), labels=labels,
                    requests=df[columns.request].astype(str).tolist() if columns.request else None)


def score_texts(rows: Labelled, scorer: Scorer, cache: ScoreCache) -> np.ndarray:
    """Each row's value from ``scorer`` (NaN where it did not score ok), in row order."""
    from .run import Summary, score_generations

    gens = [Generation(system="validate", benchmark=BENCHMARK, prompt_id=str(i), sample=0,
                       prompt=rows.requests[i] if rows.requests else "", text=text, model="",
                       decoding={},
                       meta={"question": rows.requests[i]} if rows.requests else {})
            for i, text in enumerate(rows.texts)]
    summary = Summary(scorer.name, len(gens))
    values = [s.value if s.status == OK else np.nan
              for batch in score_generations(gens, scorer, cache, summary, progress=False)
              for s in batch]
    return np.asarray(values, dtype=float)


def validate(path: str | Path, scorers: list[Scorer], columns: Columns, *,
             thresholds: list[float | None] | None = None, flip: bool = False,
             cache: ScoreCache | None = None, resamples: int = RESAMPLES) -> Report:
    """Score the labelled file with one or two scorers and measure agreement with the labels."""
    return validate_rows(str(path), read_labelled(path, columns, flip), scorers,
                         thresholds=thresholds, cache=cache, resamples=resamples)


def validate_rows(where: str, rows: Labelled, scorers: list[Scorer], *,
                  thresholds: list[float | None] | None = None, cache: ScoreCache | None = None,
                  resamples: int = RESAMPLES) -> Report:
    """:func:`validate` of labelled rows already read (``where``: what the report calls them)."""
    used = cache if cache is not None else ScoreCache()
    try:
        all_values = [score_texts(rows, s, used) for s in scorers]
    finally:
        if cache is None:
            used.close()
    thresholds = thresholds or [None] * len(scorers)
    scored = [Scored(s.name, v, given if given is not None else getattr(s, "threshold", None))
              for s, v, given in zip(scorers, all_values, thresholds)]
    return measure(where, rows.labels, scored, resamples)


@dataclass(frozen=True)
class Scored:
    """One scorer's values on the labelled rows (NaN: not scored) and its threshold."""

    scorer: str
    values: np.ndarray
    threshold: float | None = None


def measure(where: str, labels: np.ndarray, scored: list[Scored],
            resamples: int = RESAMPLES) -> Report:
    """Agreement of one or two scorers' values with ``labels`` (higher = more of the label);
    with two, their paired difference and their agreement with each other, on the same
    resamples of the rows both scored."""
    positive_above = _positive_cut(labels)
    rng = np.random.default_rng(SEED)
    both = np.all([~np.isnan(s.values) for s in scored], axis=0)
    idx = rng.integers(0, int(both.sum()), size=(resamples, int(both.sum())))
    results = [_result(s.scorer, s.values, labels, positive_above, s.threshold, rng, resamples)
               for s in scored]
    report = Report(where, len(labels), positive_above, results)
    if len(scored) == 2 and both.sum() >= 2:
        a, b = (s.values[both] for s in scored)
        y, graded = labels[both] > positive_above, labels[both]
        report.paired = {
            "AUC difference": _boot(lambda i: _auc(b[i], y[i]) - _auc(a[i], y[i]), len(a), idx),
            "Spearman difference": _boot(lambda i: _rho(b[i], graded[i]) - _rho(a[i], graded[i]),
                                         len(a), idx)}
        ta, tb = (r.threshold for r in results)
        flags = (a >= ta, b >= tb) if ta is not None and tb is not None else None
        report.agreement = agreement(a, b, flags, idx)
    return report


def agreement(a: np.ndarray, b: np.ndarray, labels: tuple[np.ndarray, np.ndarray] | None = None,
              idx: np.ndarray | None = None, resamples: int = RESAMPLES) -> dict[str, Interval]:
    """How far two scorers agree on the same rows: Spearman between their values and, when
    ``labels`` (each scorer's flag or label per row) are given, Cohen's kappa between those;
    95 % percentile-bootstrap intervals over ``idx`` (row resamples; drawn when None)."""
    if idx is None:
        idx = np.random.default_rng(SEED).integers(0, len(a), size=(resamples, len(a)))
    out = {"Spearman": _boot(lambda i: _rho(a[i], b[i]), len(a), idx)}
    if labels is not None:
        la, lb = (np.asarray(x) for x in labels)
        out["Cohen's kappa"] = _boot(lambda i: _kappa(la[i], lb[i]), len(a), idx)
    return out


def _positive_cut(labels: np.ndarray) -> float:
    """Binary labels: the lower value; graded labels: the middle of their range."""
    distinct = np.unique(labels)
    return float(distinct[0]) if len(distinct) == 2 else float((distinct[0] + distinct[-1]) / 2)


def _result(name: str, values: np.ndarray, labels: np.ndarray, cut: float,
            threshold: float | None, rng: np.random.Generator, resamples: int) -> ScorerResult:
    ok = ~np.isnan(values)
    v, lab = values[ok], labels[ok]
    y = lab > cut
    idx = rng.integers(0, len(v), size=(resamples, len(v))) if len(v) else np.zeros((0, 0), int)
    accuracy = float(np.mean((v >= threshold) == y)) if threshold is not None and len(v) else None
    return ScorerResult(name, int(ok.sum()), int((~ok).sum()),
                        _boot(lambda i: _auc(v[i], y[i]), len(v), idx),
                        _boot(lambda i: _rho(v[i], lab[i]), len(v), idx), threshold, accuracy,
                        values)


def _boot(metric, n: int, idx: np.ndarray) -> Interval:
    """The metric on all rows, and its percentile interval over bootstrap resamples (resamples
    where it is undefined left out; none defined: no interval)."""
    if n == 0:
        return Interval(np.nan, np.nan, np.nan)
    point = metric(np.arange(n))
    low, high = percentile_interval(np.array([metric(i) for i in idx], dtype=float))
    return Interval(float(point), float(low), float(high))


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return np.nan
    return float(roc_auc_score(positive, scores))


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(spearmanr(x, y).statistic)


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    if (a == a[0]).all() and (b == b[0]).all():
        return np.nan
    return float(cohen_kappa_score(a, b))
