"""The HTML (and Markdown) report: tables and pictures from the metrics of a run.

``build_report(source, out_dir)`` reads ``source`` — a directory (or file) with ``metrics.parquet``
/ ``metrics.csv`` written by ``valueharms metrics``, or else any directory of score files — and
writes ``index.html`` (self-contained: pictures embedded as base64), ``report.md`` and the
pictures as PNG files beside them. Every table and picture names the scorer behind its numbers.
"""
from __future__ import annotations

import base64
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402

from .. import analyze  # noqa: E402
from ..analyze import bias, intervals, stats, tables  # noqa: E402
from ..analyze import metrics as metrics_mod
from ..analyze import samples as samples_mod  # noqa: E402
from ..analyze.agreement import agreement_table  # noqa: E402
from ..errors import InputError  # noqa: E402
from ..values import VALUES, Profile  # noqa: E402
from . import browser  # noqa: E402

MEASURED_FILE = "measured_profiles.csv"  # found anywhere under the source directory
ALIGNMENT_FILE = "alignment.csv"  # the alignment check's metrics, beside MEASURED_FILE
MAX_PANELS = 12  # per-system pictures switch to system types beyond this many systems
SIGNIFICANT = 0.05


@dataclass
class Figure:
    id: str
    alt: str
    caption: str
    png: bytes

    @property
    def data(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    id: str
    title: str
    caption: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)  # {"title", "frame"}


# ----------------------------------------------------------------------------- inputs

def load_metrics(source: str | os.PathLike, baseline: str | Sequence[str] = "background", *,
                 resamples: int = bias.RESAMPLES, seed: int = 0) -> metrics_mod.Measured:
    """The metrics and their units: read them if ``source`` has a metrics table (the units
    from ``units.parquet`` beside it, when there), else compute them from score files."""
    source = Path(source)
    for name in ("metrics.parquet", "metrics.csv"):
        path = source / name if source.is_dir() else source
        if path.name == name and path.is_file():
            frame = pd.read_parquet(path) if name.endswith("parquet") else pd.read_csv(path)
            missing = [c for c in metrics_mod.COLUMNS if c not in frame and c not in ("low", "high")]
            if missing:
                raise InputError(f"{path}: column '{missing[0]}': missing (not a metrics table)")
            units_file = path.with_name(analyze.UNITS_FILE)
            units = pd.read_parquet(units_file) if units_file.is_file() else \
                pd.DataFrame(columns=list(metrics_mod.UNIT_COLUMNS))
            sampler = intervals.Resampler(units, seed)
            if "low" not in frame:  # a table from before the intervals
                frame = intervals.add_intervals(frame, sampler)
            return metrics_mod.Measured(frame, sampler)
    scores = metrics_mod.load_scores([source])
    return metrics_mod.measure(scores, baseline, resamples=resamples, seed=seed)


def read_alignment(measured_files: list[Path]) -> pd.DataFrame:
    """The alignment.csv rows written beside the measured-profile files (none: empty)."""
    paths = [p.with_name(ALIGNMENT_FILE) for p in measured_files]
    frames = [pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in paths if p.is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_measured(paths: list[Path]) -> dict[str, Profile]:
    """Measured profiles (CSV: name + the 10 values), keyed by system key or target name."""
    from ..targets import read_profiles

    return {p.name: p for path in paths for p in read_profiles(path)}


# ----------------------------------------------------------------------------- pictures

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _scorers(frame: pd.DataFrame) -> str:
    """Each benchmark's scorers, with the text each scored (continuation, first sentence ...)."""
    from ..score import scored_span

    pairs = frame[["benchmark", "scorer"]].drop_duplicates().sort_values(["benchmark", "scorer"])
    return "; ".join(f"{b}: {s}" + (f" (scored text: {span})" if (span := scored_span(s)) else "")
                     for b, s in pairs.itertuples(index=False))


def heatmap(corr: pd.DataFrame, method: str) -> Figure:
    """Value x harm category Pearson r, '*' where the BH q < 0.05."""
    part = corr[corr["method"] == method].copy()
    many = part.groupby("benchmark")["scorer"].nunique()
    part["harm"] = [f"{b}/{c}" + (f" [{s}]" if many[b] > 1 else "")
                    for b, c, s in zip(part["benchmark"], part["category"], part["scorer"])]
    r = part.pivot_table(index="value", columns="harm", values="pearson_r", aggfunc="first",
                         dropna=False).reindex(VALUES)
    q = part.pivot_table(index="value", columns="harm", values="pearson_q", aggfunc="first",
                         dropna=False).reindex(index=VALUES, columns=r.columns)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * r.shape[1] + 2.5), 5.2))
    image = ax.imshow(r.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(r.shape[1]), r.columns, rotation=75, ha="right", fontsize=7)
    ax.set_yticks(range(len(VALUES)), VALUES, fontsize=8)
    values = r.to_numpy(dtype=float)
    for i, j in zip(*np.nonzero(q.to_numpy(dtype=float) < SIGNIFICANT)):
        ax.text(j, i, "*", ha="center", va="center", fontsize=13, fontweight="bold",
                color="white" if abs(values[i, j]) > 0.6 else "black")
    systems = int(part["n"].max()) if len(part) else 0
    ax.set_title(f"{method}: value x harm, Pearson r over {systems} aligned systems (* BH q < 0.05)",
                 fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
    caption = (f"Target value score against the harm metric of each category, across the {method} "
               f"systems. Scorers: {_scorers(part)}.")
    return Figure("heatmap" if method == "vim" else f"heatmap-{method}",
                  f"value-harm correlation heatmap ({method})", caption, _png(fig))


def category_bars(rows: pd.DataFrame, title: str, fig_id: str) -> Figure:
    """Per-category bars, one bar per system (or system type when there are many systems)."""
    by = "system" if rows["system"].nunique() <= MAX_PANELS else "system_type"
    wide = rows.pivot_table(index="category", columns=by, values="value", aggfunc="mean")
    fig, ax = plt.subplots(figsize=(11, 0.35 * len(wide) * max(1, wide.shape[1] / 4) + 1.5))
    height = 0.8 / wide.shape[1]
    cmap = plt.get_cmap("tab20")
    for k, column in enumerate(wide.columns):
        ax.barh(np.arange(len(wide)) + k * height, wide[column], height, label=column,
                color=cmap(k % 20))
    ax.set_yticks(np.arange(len(wide)) + 0.4 - height / 2, wide.index, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(title)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    return Figure(fig_id, title, f"{title}, per category and {by.replace('_', ' ')} "
                  "(no mitigation).", _png(fig))


def profile_lines(profiles: dict[str, Profile], systems: pd.DataFrame,
                  measured: dict[str, Profile], alignment: pd.DataFrame | None) -> Figure:
    """Per aligned system: its target (solid), its measured profile (dashed) and the base
    model's (dotted grey), titled with NMSE and Pearson r against the target and their
    intervals (:func:`profile_fit`); the alt text says the same for every panel."""
    aligned = systems[systems["kind"].isin(("vim", "prompt")) & (systems["strategy"] == "none")
                      & systems["target"].isin(profiles)].head(MAX_PANELS)
    cols = min(4, max(1, len(aligned)))
    rows = int(np.ceil(len(aligned) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False,
                             sharey=True)
    x = np.arange(len(VALUES))
    base = measured.get("vanilla")
    fits = []
    for ax, item in zip(axes.flat, aligned.itertuples()):
        target = profiles[item.target]
        ax.plot(x, target.scores, "o-", color="#1f77b4", label="target")
        title = item.system
        found = measured.get(item.system) or measured.get(item.target)
        if found is not None:
            ax.plot(x, found.scores, "s--", color="#d62728", label="measured")
            nmse, r = profile_fit(item.system, target, found, alignment)
            title += f"\n{nmse}\n{r}"
            fits.append(f"{item.system}: {nmse}, {r}")
        if base is not None:
            ax.plot(x, base.scores, ":", color="#7f7f7f", label="base model")
        ax.set_title(title, fontsize=8)
        ax.set_xticks(x, [v[:3] for v in VALUES], fontsize=7, rotation=60)
        ax.set_ylim(0.8, 6.2)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(aligned):]:
        ax.axis("off")
    fig.tight_layout()
    caption = "Target profile (1-6) of each aligned system" + (
        " and its measured profile (mean questionnaire answer per value; dotted: the base "
        "model's); titles: NMSE (level and shape) and Pearson r (shape) against the target, "
        "with the alignment check's 95 % interval (items resampled) and its number of items"
        if measured else "; no measured profiles were given")
    alt = "; ".join(["target and measured value profiles", *fits])
    return Figure("profiles", alt, caption + ".", _png(fig))


Bounded = tuple[float | None, float | None, float | None]  # a value and its interval's ends


def profile_fit(system: str, target: Profile, found: Profile,
                alignment: pd.DataFrame | None) -> tuple[str, str]:
    """``NMSE x [low, high]`` and ``r y [low, high] (n items)`` of ``system``'s measured
    profile against ``target``: the alignment check's row (alignment.csv), whose intervals
    resample the items; without one, computed from ``found`` with no interval."""
    from ..align.check import compare

    rows = (alignment[(alignment["system"] == system) & (alignment["target"] == target.name)]
            if alignment is not None and not alignment.empty else pd.DataFrame())
    nmse: Bounded
    r: Bounded
    if rows.empty:
        point = compare(found.scores, target.scores)
        nmse, r, items = (point.nmse, None, None), (point.pearson_r, None, None), ""
    else:
        row = rows.iloc[0]
        nmse, r = ((row.get(k), row.get(f"{k}_low"), row.get(f"{k}_high"))
                   for k in ("nmse", "pearson_r"))
        items = f" ({row['n_items']} items)"
    # An undefined r (a constant answer) is "n/a", never 0.
    return (f"NMSE {intervals.cell(*nmse, '.3f') or 'n/a'}",
            f"r {intervals.cell(*r, '+.2f') or 'n/a'}{items}")


def mitigation_bars(mitigation: pd.DataFrame) -> list[Figure]:
    """One figure per benchmark: its headline metrics (category all) by system type and
    mitigation strategy, with the 95 % intervals as error bars."""
    rows = mitigation[mitigation["category"] == "all"]
    colours = dict(zip(tables.STRATEGIES, ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")))
    out = []
    for k, (bench, part) in enumerate(rows.groupby("benchmark", sort=True)):
        groups = list(part.groupby(["metric", "scorer"], sort=False))
        fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.2), squeeze=False)
        for ax, ((metric, scorer), group) in zip(axes.flat, groups):
            wide = group.pivot_table(index="system_type", columns="strategy", values="value")
            low = group.pivot_table(index="system_type", columns="strategy", values="low")
            high = group.pivot_table(index="system_type", columns="strategy", values="high")
            strategies = [s for s in tables.STRATEGIES if s in wide.columns]
            width = 0.8 / len(strategies)
            for j, strategy in enumerate(strategies):
                err = np.vstack([wide[strategy] - low.get(strategy, wide[strategy]),
                                 high.get(strategy, wide[strategy]) - wide[strategy]])
                ax.bar(np.arange(len(wide)) + j * width, wide[strategy], width, label=strategy,
                       color=colours.get(strategy), yerr=np.nan_to_num(err), capsize=3)
            ax.set_xticks(np.arange(len(wide)) + 0.4 - width / 2, wide.index, fontsize=9)
            ax.set_ylabel(metric, fontsize=9)
            ax.set_title(tables.label(bench, metric, scorer), fontsize=10)
            ax.legend(fontsize=8, title="mitigation", title_fontsize=8)
        fig.tight_layout()
        out.append(Figure(f"mitigation-{k}", f"Bar chart: {bench} headline metrics per system "
                          "type and mitigation strategy, with 95 % interval error bars",
                          f"{bench}: headline metrics by mitigation strategy (none = input "
                          "only), error bars the 95 % bootstrap intervals; the change from none "
                          "is in the table below.", _png(fig)))
    return out


# ----------------------------------------------------------------------------- document

def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def _ci(value: float, low: float, high: float, sign: str = "") -> str:
    """``value [low, high]``, or the bare value when it has no interval."""
    return intervals.cell(value, low, high, f"{sign}.3g")


def _cells(table: pd.DataFrame, column: str, bounds: str | None = None, sign: str = "") -> list[str]:
    """``value [low, high]`` of ``column`` in every row, the interval read from the columns
    ``{bounds}low`` and ``{bounds}high`` (``bounds`` default: ``{column}_``); bare values where
    those columns are missing (a file written before the intervals)."""
    prefix = f"{column}_" if bounds is None else bounds
    none = pd.Series(np.nan, index=table.index)
    return [_ci(v, lo, hi, sign) for v, lo, hi in zip(
        table[column], table.get(f"{prefix}low", none), table.get(f"{prefix}high", none))]


def _with_cells(rows: pd.DataFrame, what: str) -> pd.DataFrame:
    """``rows`` with ``cell``: ``value [low, high]`` of ``what`` (value or difference)."""
    if what == "value":
        return rows.assign(cell=_cells(rows, what, ""))
    rows = rows[rows["difference"].notna()]
    return rows.assign(cell=_cells(rows, what, sign="+"))


def comparison_cells(long: pd.DataFrame, what: str) -> pd.DataFrame:
    """The comparison table (category all) as ``value [low, high]`` cells (``what``: value or
    difference)."""
    cells = _with_cells(long[long["category"] == "all"], what)
    wide = cells.pivot(index="system_type", columns="label", values="cell")
    order = list(dict.fromkeys(cells["system_type"]))
    labels = list(dict.fromkeys(cells["label"]))
    systems = cells.drop_duplicates("system_type").set_index("system_type")["systems"]
    return wide.reindex(index=order, columns=labels).fillna("") \
        .assign(systems=systems).reset_index()[["system_type", "systems", *labels]]


def category_cells(long: pd.DataFrame, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """One category table (``frame``: category x system type, from ``tables.category_tables``)
    with ``value [low, high]`` cells from the same bootstrap as the comparison table."""
    cells = _with_cells(long[(long["label"] == name) & (long["category"] != "all")], "value")
    if cells.empty:  # no units: the point values
        return frame
    wide = cells.pivot(index="category", columns="system_type", values="cell")
    return wide.reindex(index=frame["category"], columns=frame.columns[1:]).fillna("") \
        .reset_index()


def alignment_cells(table: pd.DataFrame) -> pd.DataFrame:
    """alignment.csv rows with ``value [low, high]`` metric cells (bare values from a file
    written before the intervals)."""
    from ..align.check import METRIC_FIELDS

    cells = {k: _cells(table, k) for k in METRIC_FIELDS}
    return table[["system", "target", "instrument", "method", "n_items", "n_unparsed"]] \
        .assign(**cells)


def profile_section(result: analyze.Analysis, measured: dict[str, Profile],
                    alignment: pd.DataFrame | None) -> Section | None:
    """The profiles figure and the alignment check's table (None when there is neither)."""
    figures = [profile_lines(result.profiles, tables.systems_frame(result.metrics["system"]),
                             measured, alignment)] if result.profiles else []
    found = alignment is not None and not alignment.empty
    if not figures and not found:
        return None
    caption = ("Alignment check (alignment.csv): every system's measured profile against every "
               "target; a system should sit closest to its own. Cells: value [95 % bootstrap "
               "interval], resampling the questionnaire's items within each value (arguments: "
               "whole arguments), the same resamples for every system. With a few items per "
               "value (PVQ-40: 3-6) the answers' noise pushes NMSE up and r towards 0; the "
               "interval does not remove that." if found else "")
    return Section("profiles", "Target and measured value profiles", caption, figures,
                   [{"title": "Alignment check", "frame": alignment_cells(alignment)}]
                   if found else [])


def mitigation_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The mitigation table (category all) with ``value [low, high]`` cells."""
    return table.assign(
        value=_cells(table, "value", ""), change=_cells(table, "change", sign="+")
    )[["system_type", "strategy", "benchmark", "scorer", "metric", "value", "change", "systems"]]


def agreement_section(table: pd.DataFrame) -> Section:
    """The agreement table (``analyze.agreement``) with ``value [low, high]`` cells."""
    cells = table.assign(spearman=_cells(table, "spearman"), kappa=_cells(table, "kappa"))
    cells = cells.rename(columns={"spearman": "Spearman [95 % CI]",
                                  "kappa": "Cohen's kappa [95 % CI]"})
    return Section("agreement", "Agreement between scorers",
                   "Scorers that scored the same generations, per benchmark, on the generations "
                   "both scored: Spearman between their scores (regard: between their labels, "
                   "negative < neutral < positive) and Cohen's kappa between what each one's "
                   "headline rate counts (columns counted_a, counted_b). 95 % bootstrap "
                   "intervals resample generations (samples of one prompt are not kept "
                   "together). Read it before trusting a cheap scorer in place of an expensive "
                   "one; numbers in agreement.csv.",
                   tables=[{"title": "", "frame": cells[[
                       "benchmark", "scorer_a", "scorer_b", "n", "Spearman [95 % CI]",
                       "Cohen's kappa [95 % CI]", "counted_a", "counted_b"]]}])


def _html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


def _markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(str(c).replace("|", "/") for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_fmt(v).replace("|", "/") for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def sections(result: analyze.Analysis, measured: dict[str, Profile],
             alignment: pd.DataFrame | None = None) -> list[Section]:
    """The report's sections (tables and pictures) from the analysis; ``alignment``: the rows
    of the alignment check's alignment.csv files."""
    m = result.metrics
    intervals_note = ("Cells: value [95 % bootstrap interval], resampling prompts (a prompt's "
                      "samples stay together; the bias score resamples its (axis, descriptor) "
                      "groups); the systems and targets are held fixed. ")
    if result.comparison_intervals.empty:
        comparison = [{"title": "", "frame": result.comparison}]
        intervals_note = "No intervals: the metrics table came without units.parquet. "
    else:
        comparison = [{"title": "", "frame": comparison_cells(result.comparison_intervals, "value")},
                      {"title": "Difference from vanilla (paired over prompts)",
                       "frame": comparison_cells(result.comparison_intervals, "difference")}]
    out = [Section("comparison", "Comparison by system type",
                   "Mean over the systems of each type without mitigation (VIM and prompting: "
                   "over their targets). Rates are fractions 0-1; every column names its scorer. "
                   + intervals_note + _baseline_note(m), tables=comparison)]
    corr = result.correlations
    missing = ("Targets without a known profile, left out of the correlations: "
               + ", ".join(result.missing_targets) + ".") if result.missing_targets else ""
    if not corr.empty:
        methods = sorted(corr["method"].unique(), key=lambda k: k != "vim")
        sig = corr[corr["pearson_q"] < SIGNIFICANT].sort_values("pearson_q")
        counts = corr.groupby("method")["n"].max()
        few = [f"{meth}: {n} systems" for meth, n in counts.items() if n < stats.MIN_SYSTEMS]
        honesty = (f"With fewer than {stats.MIN_SYSTEMS} systems no p-value is computed and "
                   f"nothing is marked significant ({'; '.join(few)}: too few systems). "
                   if few else "") + (
            f"p-values: exact or random permutation tests below {stats.EXACT_BELOW} systems "
            "(column test in correlations.csv); they assume the targets are independent draws.")
        tables_ = [{"title": "Significant pairs (q < 0.05)", "frame": sig}]
        family = result.family_correlations
        if not family.empty:
            honesty += (" The targets come in families of near neighbours, which are not "
                        "independent: the family-level table treats each family as one unit.")
            tables_.append({"title": "Family level (family means; r interval resamples families)",
                            "frame": family.sort_values("family_p").head(20)})
        out.append(Section("correlations", "Values and harms",
                           "Pearson r between a target's value score and the harm per category "
                           "across aligned systems; * marks Benjamini-Hochberg q < 0.05 over the "
                           "method's grid (10 values x every harm metric and category; Spearman "
                           "in correlations.csv). " + honesty + " " + missing,
                           figures=[heatmap(corr, meth) for meth in methods], tables=tables_))
    elif missing:
        out[0].caption += " " + missing
    if not result.versus_vanilla.empty:
        out.append(Section("versus-vanilla", "Value-aligned vs vanilla",
                           "Per metric, the aligned systems' differences from vanilla over "
                           f"systems: no p-value below {stats.MIN_SYSTEMS} systems, a sign-flip "
                           f"permutation test below {stats.EXACT_BELOW}, else Wilcoxon "
                           "signed-rank (column test); they assume independent targets. BH q "
                           "per method (per category in versus_vanilla.csv).",
                           tables=[{"title": "", "frame": result.versus_vanilla[
                               result.versus_vanilla["category"] == "all"]}]))
    cats = tables.with_systems(tables.headline_all_categories(m))
    cats = cats[(cats["category"] != "all") & (cats["strategy"] == "none")]
    figures, frames = [], []
    for k, (name, frame) in enumerate(result.categories.items()):
        bench, metric, scorer = _split_label(name)
        rows = cats[(cats["benchmark"] == bench) & (cats["metric"] == metric) & (cats["scorer"] == scorer)]
        if rows["value"].notna().any():  # no bars when no answer was scored (all unparsed)
            figures.append(category_bars(rows, name, f"categories-{k}"))
        frames.append({"title": name, "frame": category_cells(result.comparison_intervals,
                                                              name, frame)})
    if figures:
        out.append(Section("categories", "Harm by category",
                           "Per category, the mean over each system type's systems (no "
                           "mitigation). " + intervals_note, figures, frames))
    profiles = profile_section(result, measured, alignment)
    if profiles is not None:
        out.append(profiles)
    if not result.mitigation.empty:
        table = result.mitigation[result.mitigation["category"] == "all"]
        out.append(Section("mitigation", "Mitigation", "Strategy x system type; change = mean "
                           "paired difference from the same systems without mitigation, with "
                           "its 95 % interval (prompts resampled, paired across the systems; "
                           "all categories in mitigation.csv).",
                           mitigation_bars(result.mitigation),
                           [{"title": "", "frame": mitigation_cells(table)}]))
    counts = m[m["category"] == "all"].drop_duplicates(["system", "benchmark", "scorer"])
    status = ["n_failed", "n_unscorable", "n_unparsed"]
    counts = counts[counts[status].sum(axis=1) > 0]
    out.append(Section("counts", "Items not scored",
                       "Generations whose score failed, could not be scored, or could not be "
                       "parsed: excluded from every number above. "
                       + ("" if len(counts) else "None: every generation has a verdict."),
                       tables=[{"title": "", "frame": counts[["system", "benchmark", "scorer",
                                *status]]}] if len(counts) else []))
    return out


SCALE = {"mean_harm_score": 4.0}  # a 1-5 judge score spans 4; rates and toxicity span 1


def largest_effects(result: analyze.Analysis, count: int = 3) -> list[str]:
    """One quotable sentence per largest difference from vanilla (on each metric's range),
    with its n and 95 % interval."""
    table = result.comparison_intervals
    if table.empty:
        return []
    table = table[table["category"] == "all"]
    rows = table[table["difference"].notna()]
    vanilla = table[table["system_type"] == "vanilla"].set_index("label")["value"]
    size = rows["difference"].abs() / [SCALE.get(mt, 1.0) for mt in rows["metric"]]
    out = []
    for _, r in rows.loc[size.sort_values(ascending=False).index[:count]].iterrows():
        n = result.metrics[(result.metrics["benchmark"] == r["benchmark"])
                           & (result.metrics["metric"] == r["metric"])
                           & (result.metrics["category"] == "all")]["n"].max()
        out.append(f"{r['system_type']} ({r['systems']} system{'s' * (r['systems'] != 1)}) vs "
                   f"vanilla on {r['label']}: {r['value']:.3g} vs {vanilla.get(r['label'], np.nan):.3g}, "
                   f"difference {_ci(r['difference'], r['difference_low'], r['difference_high'], '+')} "
                   f"(95 % bootstrap interval over {n} items, paired).")
    return out


def _split_label(name: str) -> tuple[str, str, str]:
    bench, _, rest = name.partition(" / ")
    metric, _, scorer = rest.partition(" [")
    return bench, metric, scorer[:-1]


def _baseline_note(m: pd.DataFrame) -> str:
    names = sorted({x for x in m["metric"] if x.startswith("bias_score")})
    notes = []
    if any("0.5%" in x for x in names):
        notes.append(bias.PARITY_NOTE + ".")
    if any("background" in x for x in names):
        notes.append("Bias score with baseline background: a (axis, descriptor) group fails when "
                     "the upper bound of its 97.5% bootstrap CI of the negative-regard percentage "
                     "exceeds the model's overall negative-regard percentage.")
    return " ".join(notes)


def build_report(source: str | os.PathLike, out_dir: str | os.PathLike, *,
                 baseline: str | Sequence[str] = "background", data_dir: str | None = None,
                 measured: Sequence[str | os.PathLike] | None = None,
                 profiles: list[Profile] | None = None, resamples: int = bias.RESAMPLES,
                 seed: int = 0, title: str = "valueharms report",
                 samples: pd.DataFrame | None = None) -> Path:
    """Write ``out_dir/index.html``, ``report.md``, the PNGs and the tables; return index.html.

    ``measured``: CSV files of measured profiles (name = system key or target, 10 values); by
    default every ``measured_profiles.csv`` under ``source``. ``profiles``: user target profiles.
    ``samples`` (``analyze.samples.samples_table``): written beside the report as samples.parquet.
    """
    source = Path(source)
    if not source.exists():
        raise InputError(f"--in {source}: no such file or directory")
    measured_files = [Path(p) for p in measured] if measured is not None else (
        sorted(source.rglob(MEASURED_FILE)) if source.is_dir() else [])
    measured_profiles = read_measured(measured_files)
    alignment = read_alignment(measured_files)
    found = load_metrics(source, baseline, resamples=resamples, seed=seed)
    m = found.table
    result = analyze.analyse(m, data_dir, profiles, found.resampler, seed)
    parts = sections(result, measured_profiles, alignment)
    agreement = agreement_table(samples) if samples is not None else pd.DataFrame()
    if not agreement.empty:  # after the comparison: how far to trust its scorers
        parts.insert(1, agreement_section(agreement))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".report.") as tmp:
        analyze.write(result, tmp)
        for section in parts:
            for figure in section.figures:
                (Path(tmp) / f"{figure.id}.png").write_bytes(figure.png)
        env = Environment(loader=PackageLoader("valueharms", "report"),
                          autoescape=select_autoescape(["html"]))
        models = sorted(samples["model"].dropna().unique()) if samples is not None else []
        intro = (f"{m['system'].nunique()} systems"
                 + (f" of {', '.join(models)}" if models else "") + ", benchmarks: "
                 f"{', '.join(sorted(m['benchmark'].unique()))}. Scorers: {_scorers(m)}.")
        effects = largest_effects(result)
        if samples is not None:
            samples_mod.write_samples(samples, Path(tmp) / "samples.parquet")
        if not agreement.empty:
            agreement.to_csv(Path(tmp) / "agreement.csv", index=False)
        for section in parts:
            for table in section.tables:
                table["html"] = _html(table["frame"])
        sample_browser = browser.browser(samples, seed=seed) if samples is not None else None
        html = env.get_template("template.html").render(title=title, intro=intro, sections=parts,
                                                        effects=effects, browser=sample_browser)
        (Path(tmp) / "index.html").write_text(html, encoding="utf-8")
        summary = intro + "".join(f"\n- {e}" for e in effects)
        (Path(tmp) / "report.md").write_text(_markdown_report(title, summary, parts),
                                             encoding="utf-8")
        analyze.publish(Path(tmp), out, last="index.html")
    return out / "index.html"


def _markdown_report(title: str, intro: str, parts: list[Section]) -> str:
    lines = [f"# {title}", "", intro, ""]
    for section in parts:
        lines += [f"## {section.title}", ""]
        if section.caption:
            lines += [section.caption, ""]
        for figure in section.figures:
            lines += [f"![{figure.alt}]({figure.id}.png)", "", f"*{figure.caption}*", ""]
        for table in section.tables:
            if table["title"]:
                lines += [f"### {table['title']}", ""]
            lines += [_markdown(table["frame"]), ""]
    return "\n".join(lines)
