"""The report, opened in a real headless Chromium: not blank, heatmap present, scorers named."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_analysis import ALIGNED, synthetic_scores, write_score_files

from valueharms.values import SHORT, VALUES, extreme

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
    with open(root / "alignment" / "measured_profiles.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", *VALUES])
        for target in ALIGNED:
            scores = np.clip(np.array(extreme((SHORT[target],))) + rng.normal(0, 0.6, 10), 1, 6)
            writer.writerow([f"vim:{target}", *scores.round(3)])
    return root


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


def test_report_bad_input_is_one_line_and_leaves_nothing(tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("report", "--in", str(empty), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "no score files" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
