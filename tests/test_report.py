"""The report, opened in a real headless Chromium: not blank, heatmap present, scorers named."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_analysis import ALIGNED, synthetic_scores, write_score_files

from valueharms.align import check
from valueharms.values import SHORT, VALUES, Profile, extreme

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "Debian chromium is needed (make test installs it: apt-get install chromium)"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A study-like run: score files per benchmark, generations beside them, measured profiles."""
    root = tmp_path_factory.mktemp("run")
    write_score_files(root, synthetic_scores(seed=1))
    rng = np.random.default_rng(2)
    (root / "alignment").mkdir()
    targets = [Profile(t, tuple(extreme((SHORT[t],)))) for t in ALIGNED]
    rows = [check.measure(f"vim:{t.name}", t, questionnaire(rng, np.array(t.scores)), "pvq40",
                          "expected") for t in targets]
    (root / "alignment" / "alignment.csv").write_text(check.table_csv(rows))
    with open(root / "alignment" / "measured_profiles.csv", "w", newline="") as fh:
        writer = csv.writer(fh)  # as the check writes it: the mean answer per value
        writer.writerow(["name", *VALUES])
        for row in rows:
            writer.writerow([row.system, *np.round(row.measured, 3)])
    return root


def questionnaire(rng: np.random.Generator, centre: np.ndarray) -> list[check.Answer]:
    """Answers to a 4-item-per-value questionnaire, scattered around the profile ``centre``."""
    return [check.Answer(check.Item(4 * v + k, value, f"q{4 * v + k}"), None, None,
                         float(np.clip(centre[v] + rng.normal(0, 1.2), 1, 6)))
            for v, value in enumerate(VALUES) for k in range(4)]


def build(run_dir: Path, out: Path, cli, *extra: str) -> Path:
    result = cli("report", "--in", str(run_dir), "--out", str(out), "--resamples", "999", *extra)
    assert result.returncode == 0, result.stderr
    index = Path(result.stdout.strip().splitlines()[-1])
    assert index == out / "index.html" and index.is_file()
    return index


@pytest.mark.slow
@pytest.mark.chromium
def test_report_renders_in_chromium_with_heatmap_and_scorers(run_dir, tmp_path, cli):
    index = build(run_dir, tmp_path / "report", cli)
    html = index.read_text()
    assert "judge-hexphi:local-smollm2" in html and "offline-profanity" in html
    assert "bias_score[baseline=background]" in html
    for section in ("comparison", "correlations", "categories", "profiles", "mitigation", "counts"):
        assert f'id="{section}"' in html
    md = (tmp_path / "report" / "report.md").read_text()
    assert "![value-harm correlation heatmap (vim)](heatmap.png)" in md
    assert (tmp_path / "report" / "heatmap.png").is_file()

    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", index.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    non_white = (pixels.min(axis=1) < 240).mean()
    assert colours > 500, colours
    assert non_white > 0.05, non_white

    dom = chromium(tmp_path, "--dump-dom", index.as_uri()).stdout
    heat = re.search(r'<img[^>]*id="heatmap"[^>]*>', dom)
    assert heat, "no heatmap image in the rendered page"
    assert 'src="data:image/png;base64,' in heat.group(0)
    assert len(heat.group(0)) > 10_000  # a real picture, not an empty one


@pytest.mark.slow
def test_report_from_metrics_tables_and_parity_baseline(run_dir, tmp_path, cli):
    tables = tmp_path / "tables"
    result = cli("metrics", "--in", str(run_dir), "--out", str(tables), "--baseline", "0.5",
                 "--resamples", "999")
    assert result.returncode == 0, result.stderr
    index = build(tables, tmp_path / "report", cli, "--measured",
                  str(run_dir / "alignment" / "measured_profiles.csv"))
    html = index.read_text()
    assert "bias_score[baseline=0.5%]" in html and "0.5 %" in html
    assert "measured profile" in html


def table_rows(markdown: str, title: str) -> list[list[str]]:
    """The body cells of the report.md table under ``### title``."""
    block = markdown.split(f"### {title}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block]


CELL = r"-?\d[\d.e+-]* \[-?\d[\d.e+-]*, -?\d[\d.e+-]*\]"  # value [low, high]


@pytest.mark.slow
def test_category_and_alignment_tables_show_value_and_interval(run_dir, tmp_path, cli):
    build(run_dir, tmp_path / "report", cli)
    md = (tmp_path / "report" / "report.md").read_text()
    hexphi = table_rows(md, "hexphi / mean_harm_score [judge-hexphi:local-smollm2]")
    assert len(hexphi) > 3 and all(re.fullmatch(CELL, c) for row in hexphi for c in row[1:] if c)
    # each cell is the category's long-table value inside its own interval
    long = pd.read_csv(tmp_path / "report" / "comparison_intervals.csv")
    vim = long[(long["metric"] == "mean_harm_score") & (long["system_type"] == "vim")
               & (long["category"] != "all")]
    assert (vim["low"] <= vim["value"]).all() and (vim["value"] <= vim["high"]).all()
    assert (vim["high"] > vim["low"]).all()
    align = table_rows(md, "Alignment check")
    assert len(align) == len(ALIGNED)
    assert all(re.fullmatch(CELL, c) for row in align for c in row[6:]), align[0]
    # The profile figure's panels are titled, and its alt text written, with the check's NMSE
    # and r, each with its interval, and the number of items.
    alt = [line[2:-len("](profiles.png)")] for line in md.splitlines()
           if line.startswith("![target and measured") and line.endswith("](profiles.png)")]
    assert len(alt) == 1, md
    checked = pd.read_csv(run_dir / "alignment" / "alignment.csv")
    shown = [row for row in checked.itertuples() if f"; {row.system}: " in alt[0]]
    assert len(shown) >= 8, alt[0]  # the panels of the systems with a measured profile
    for row in shown:
        fit = (f"{row.system}: NMSE {row.nmse:.3f} [{row.nmse_low:.3f}, {row.nmse_high:.3f}], "
               f"r {row.pearson_r:+.2f} [{row.pearson_r_low:+.2f}, {row.pearson_r_high:+.2f}] "
               f"({row.n_items} items)")
        assert fit in alt[0], (fit, alt[0])
    assert row.nmse_low < row.nmse_high and row.n_items == 40
    html = (tmp_path / "report" / "index.html").read_text()
    assert f'alt="{alt[0]}"' in html


def test_report_bad_input_is_one_line_and_leaves_nothing(tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("report", "--in", str(empty), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "no score files" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.chromium
@pytest.mark.slow
def test_sample_browser_filters_and_sorts_in_chromium(tmp_path, cli):
    from test_samples import write_run

    write_run(tmp_path / "run")
    index = build(tmp_path / "run", tmp_path / "report", cli)
    assert (tmp_path / "report" / "samples.parquet").is_file()
    # the page's own script reads the filters from the address, as a reader's link would
    url = index.as_uri() + "?system=vim%3AHed&min=0.2&sort=desc"
    dom = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", url).stdout
    body = re.search(r'<table id="sample-table">.*?<tbody>(.*?)</tbody>', dom, re.S)
    assert body, "no sample table in the rendered page"
    trs = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)
    rows = [re.findall(r"<td>(.*?)</td>", tr) for tr in trs]
    # vim:Hed: 3 prompts x 2 samples x 2 scorers, values (p + s + k) / 10; those >= 0.2
    expected = sorted([(p + s + k) / 10 for p in range(3) for s in range(2) for k in range(2)
                       if (p + s + k) / 10 >= 0.2], reverse=True)
    assert len(rows) == len(expected) == 8
    assert {r[0] for r in rows} == {"vim:Hed"}
    assert [float(r[8]) for r in rows] == pytest.approx(expected)
    top = rows[0]
    assert top[5] == "prompt 2" and top[6] == "vim:Hed says 2/1" and top[7] == "offline-toxicity"
    assert f"8 of {3 * 3 * 2 * 2} samples match" in dom


@pytest.mark.chromium
@pytest.mark.slow
def test_report_has_no_broken_images_or_anchors_in_chromium(run_dir, tmp_path, cli):
    index = build(run_dir, tmp_path / "report", cli)
    check = tmp_path / "report" / "check.html"
    # the report plus a script that lists what a reader would find broken
    check.write_text(index.read_text().replace("</body>", """<script>
const bad = [];
for (const img of document.images) {
  if (!img.complete || img.naturalWidth === 0) bad.push("image " + img.id);
  if (!img.alt) bad.push("no alt " + img.id);
}
for (const a of document.querySelectorAll('a[href^="#"]')) {
  if (!document.getElementById(a.getAttribute("href").slice(1))) bad.push("anchor " + a.href);
}
const out = document.createElement("pre"); out.id = "check";
out.textContent = "images=" + document.images.length + " anchors="
  + document.querySelectorAll('a[href^="#"]').length + " broken=" + bad.join(",");
document.body.appendChild(out);
</script></body>"""))
    dom = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", check.as_uri()).stdout
    found = re.search(r'<pre id="check">images=(\d+) anchors=(\d+) broken=(.*?)</pre>', dom)
    assert found, "the check did not run"
    assert int(found.group(1)) >= 5 and int(found.group(2)) >= 5
    assert found.group(3) == ""
    html = index.read_text()
    assert re.search(r"vim \(\d+ systems\) vs vanilla on .*difference [+-][\d.]+ \[", html)
    assert re.search(r"\d\.\d+ \[\d\.\d+, \d\.\d+\]", html)  # value [low, high] cells


def test_large_runs_embed_a_stratified_capped_sample():
    from valueharms.report.browser import embedded_rows

    frame = pd.DataFrame({"system": np.repeat(["a", "b", "c"], [5000, 300, 20]),
                          "benchmark": "rtp", "scorer": "tox", "value": np.arange(5320.0)})
    kept, note = embedded_rows(frame, cap=300)
    assert kept.groupby("system").size().to_dict() == {"a": 100, "b": 100, "c": 20}
    assert "300" not in note.split("of")[0] and "at most 100 per system" in note
    assert embedded_rows(frame.head(10), cap=300)[1] == "All 10 scored samples."


@pytest.fixture(scope="module")
def two_scorer_run(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Score files where two scorers scored the same generations: hexphi by judge-offline
    and an API judge, rtp by offline-toxicity and Perspective (values we made up, related)."""
    root = tmp_path_factory.mktemp("two")
    rng = np.random.default_rng(5)
    rows = []
    for system in ("vanilla", "vim:Hed", "vim:Pow"):
        for p in range(15):
            harm = int(rng.integers(1, 6))
            cheap = int(np.clip(harm + rng.integers(-1, 2), 1, 5))
            tox = float(rng.random())
            key = {"system": system, "prompt_id": f"p{p}", "sample": 0, "status": "ok"}
            rows += [{**key, "benchmark": "hexphi", "scorer": "judge-hexphi:gpt-4o",
                      "value": float(harm)},
                     {**key, "benchmark": "hexphi", "scorer": "judge-offline:minilm-refusal",
                      "value": float(cheap)},
                     {**key, "benchmark": "rtp", "scorer": "perspective", "value": tox},
                     {**key, "benchmark": "rtp", "scorer": "offline-toxicity:jigsaw-bilstm"
                      "+profanity", "value": float(np.clip(tox + rng.normal(0, 0.2), 0, 1))}]
    frame = pd.DataFrame(rows)
    for (bench, scorer), part in frame.groupby(["benchmark", "scorer"]):
        folder = root / f"{bench}-{scorer.split(':')[0]}"
        folder.mkdir()
        part.to_json(folder / "scores.jsonl", orient="records", lines=True)
    return root, frame


@pytest.mark.slow
def test_report_agreement_table_for_two_scorers_on_the_same_generations(two_scorer_run,
                                                                         tmp_path, cli):
    """Per benchmark: n, Spearman and Cohen's kappa (on what the rates count: harm score 5,
    toxic at 0.5) as computed from the scores by hand, with intervals around them."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    root, frame = two_scorer_run
    index = build(root, tmp_path / "report", cli)
    table = pd.read_csv(tmp_path / "report" / "agreement.csv")
    assert list(table["benchmark"]) == ["hexphi", "rtp"] and list(table["n"]) == [45, 45]
    for bench, counts in (("hexphi", lambda v: v == 5), ("rtp", lambda v: v >= 0.5)):
        a, b = (frame[(frame["benchmark"] == bench) & (frame["scorer"] == s)]["value"].to_numpy()
                for s in sorted(frame[frame["benchmark"] == bench]["scorer"].unique()))
        row = table[table["benchmark"] == bench].iloc[0]
        assert row["spearman"] == pytest.approx(spearmanr(a, b).statistic)
        assert row["kappa"] == pytest.approx(cohen_kappa_score(counts(a), counts(b)))
        assert row["spearman_low"] < row["spearman"] < row["spearman_high"]
        assert row["kappa_low"] < row["kappa"] < row["kappa_high"]
    assert list(table["counted_a"]) == ["harm score 5", "toxic (>= 0.5)"]
    html = index.read_text()
    assert "Agreement between scorers" in html and "judge-offline:minilm-refusal" in html
    hexphi = table.iloc[0]
    assert f"{hexphi['kappa']:.3g} [{hexphi['kappa_low']:.3g}, {hexphi['kappa_high']:.3g}]" in html


@pytest.mark.chromium
@pytest.mark.slow
def test_report_agreement_section_renders_in_chromium(two_scorer_run, tmp_path, cli):
    index = build(two_scorer_run[0], tmp_path / "report", cli)
    dom = chromium(tmp_path, "--dump-dom", index.as_uri()).stdout
    section = re.search(r'<section id="agreement">(.*?)</section>', dom, re.S)
    assert section, "no agreement section in the rendered page"
    rows = re.findall(r"<tr>\s*<td>(hexphi|rtp)</td>", section.group(1))
    assert rows == ["hexphi", "rtp"]
    assert 'href="#agreement"' in dom  # reachable from the page's navigation
