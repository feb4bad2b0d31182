"""bench/bench_vim_alignment.py's printout on fixture check rows (the bench itself trains
models for most of an hour; its table and ratios are checked here without it)."""
from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest

from conftest import ROOT
from valueharms.align import check
from valueharms.values import VALUES, Profile

# Two targets far apart in level with different shapes.
LOW = Profile("Low", (2.0, 1.5, 2.5, 1.0, 1.5, 2.0, 1.0, 2.5, 2.0, 1.5))
HIGH = Profile("High", (5.0, 6.0, 4.5, 5.5, 4.0, 5.0, 6.0, 4.5, 5.5, 5.0))
JITTER = (0.3, -0.2, 0.1, 0.0, -0.3, 0.2, -0.1, 0.3, -0.2, 0.1)  # a shape learned not quite


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_vim_alignment",
                                                  ROOT / "bench" / "bench_vim_alignment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def row(system: str, target: Profile, measured) -> check.Alignment:
    """A check row of one answer per value (the answers are the measured profile)."""
    answers = [check.Answer(check.Item(n, v, f"q{n}"), None, None, float(x))
               for n, (v, x) in enumerate(zip(VALUES, measured))]
    return check.measure(system, target, answers, "pvq40", "expected")


def centred_nmse(m, t) -> float:
    m, t = np.asarray(m), np.asarray(t)
    return float(np.mean((((m - m.mean()) - (t - t.mean())) / 5) ** 2))


def test_summary_prints_the_cross_table_the_curve_and_both_discrimination_ratios():
    bench = load_bench()
    # Each VIM model took its own target's shape at the other target's level: NMSE, which
    # sees the level, puts it nearer the other target; centred NMSE sees the shape.
    measured = {"vanilla": [3.0 + 0.1 * k for k in range(10)],
                "prompt:Low": [x + 0.3 for x in LOW.scores], "prompt:High": [x - 0.3 for x in HIGH.scores],
                "vim:Low": [x + 3.2 + e for x, e in zip(LOW.scores, JITTER)],
                "vim:High": [x - 3.2 - e for x, e in zip(HIGH.scores, JITTER)],
                "curve:Low:0": [3.0] * 9 + [3.5], "curve:Low:64": [x + 1.0 for x in LOW.scores],
                "curve:High:0": [4.0] * 9 + [4.5]}
    rows = {(s, t.name): row(s, t, m) for s, m in measured.items() for t in (LOW, HIGH)}
    curves = {"Low": [(0, "a"), (64, "b"), (128, "c")], "High": [(0, "d"), (128, "e")]}
    systems = ["vanilla", "prompt:Low", "prompt:High", "vim:Low", "vim:High"]
    lines = bench.summary_lines(rows, systems, ["Low", "High"], curves)
    text = "\n".join(lines)

    assert all(any(line.startswith(s) for line in lines) for s in systems)  # the cross table
    assert [line.split(":")[0].strip() for line in lines if re.match(r"  (Low|High) +\d+:", line)] \
        == ["Low     0", "Low    64", "Low   128", "High     0", "High   128"]  # the curve
    assert "vanilla: mean NMSE on its own target" in text and "ratio 1.000" in text
    ratio = float(re.search(r"^ratio vim_discrimination ([\d.]+)$", text, re.M).group(1))
    centred = float(re.search(r"^ratio vim_discrimination_centered ([\d.]+)$", text, re.M).group(1))
    vim_low, vim_high = measured["vim:Low"], measured["vim:High"]
    own = centred_nmse(vim_low, LOW.scores) + centred_nmse(vim_high, HIGH.scores)
    other = centred_nmse(vim_low, HIGH.scores) + centred_nmse(vim_high, LOW.scores)
    assert centred == pytest.approx(other / own, abs=5e-4)  # pooled, then divided
    assert ratio < 1 < centred
    assert lines[-2:] == [f"ratio vim_discrimination {ratio:.3f}",
                          f"ratio vim_discrimination_centered {centred:.3f}"]
