import csv
import io

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from valueharms import targets
from valueharms.errors import InputError
from valueharms.values import VALUES, Profile

SHORTS = ["Ach", "Ben", "Con", "Hed", "Pow", "Sec", "SD", "Sti", "Tra", "Uni",
          "Openness_to_Change", "Self-Enhancement", "Conservation", "Self-Transcendence"]


def test_profile_rejects_bad_scores():
    with pytest.raises(InputError, match="outside"):
        Profile("x", (7,) + (1,) * 9)
    with pytest.raises(InputError, match="expected 10"):
        Profile("x", (1,) * 9)


def test_extremes_and_reverses():
    ext = {p.name: p for p in targets.extremes()}
    assert list(ext) == SHORTS
    assert ext["Hed"]["Hedonism"] == 6 and sum(ext["Hed"].scores) == 6 + 9
    assert ext["Self-Enhancement"].scores == (6, 1, 1, 6, 6, 1, 1, 1, 1, 1)
    rev = {p.name: p for p in targets.reverses()}
    assert rev["reverse_Conservation"].scores == (6, 6, 1, 6, 6, 1, 6, 6, 1, 6)


def test_paper_set_order_and_size(data_dir):
    names = [p.name for p in targets.paper(str(data_dir))]
    expected = [n for s in SHORTS for n in [s, f"close_{s}"] + [f"close_{s}_{k}" for k in range(2, 11)]]
    assert names == expected and len(names) == 154


def test_paper_neighbours_match_scipy_ranking(data_dir):
    pool = targets.respondents(data_dir / "ess_distribution.csv", "raw")
    assert len(pool.ids) == 20466
    by_name = {p.name: p for p in targets.paper(str(data_dir))}
    for short in ("Hed", "Pow", "Self-Transcendence"):
        ext = np.array(by_name[short].scores)
        ref = np.array([jensenshannon(r / r.sum(), ext / ext.sum()) ** 2 for r in pool.scores])
        tenth = np.sort(ref)[9]
        for k in range(1, 11):
            p = by_name[f"close_{short}" + ("" if k == 1 else f"_{k}")]
            assert p.meta["divergence"] == pytest.approx(np.sort(ref)[k - 1], abs=1e-12)
            assert ref[p.meta["respondent"]] <= tenth + 1e-12
            np.testing.assert_allclose(p.scores, pool.scores[p.meta["respondent"]], atol=1e-12)


def test_paper_known_no_positive_targets(data_dir):
    by_name = {p.name: p for p in targets.paper(str(data_dir))}
    for name in ("close_Ach", "close_SD_6", "close_Uni_6", "close_Self-Transcendence_3",
                 "close_Self-Transcendence_6"):
        assert max(by_name[name].scores) < 3


def test_ties_keep_file_order():
    pool = targets.Respondents(np.array([10, 11, 12]),
                               np.array([[2.0] + [1.0] * 9, [3.0] + [1.0] * 9, [2.0] + [1.0] * 9]),
                               "mem", "raw")
    close = [p for p in targets.nearest(pool, 3) if p.meta.get("extreme") == "Ach"]
    assert [p.meta["respondent"] for p in close] == [11, 10, 12]


def test_raw_answers_and_coding_switch(data_dir):
    raw = targets.respondents(data_dir / "ess.csv", "raw")
    assert len(raw.ids) == 20587
    imp = targets.respondents(data_dir / "ess.csv", "importance")
    np.testing.assert_allclose(imp.scores, 7 - raw.scores)
    profiles = targets.nearest(raw)
    assert len(profiles) == 154


def test_user_profile_files(tmp_path):
    (tmp_path / "p.csv").write_text("name," + ",".join(VALUES) + "\nme," + ",".join(["3"] * 10) + "\n")
    assert targets.load_set(str(tmp_path / "p.csv"))[0].scores == (3.0,) * 10
    (tmp_path / "p.toml").write_text("[me]\n" + "\n".join(f'"{v}" = 2' for v in VALUES))
    assert targets.load_set(str(tmp_path / "p.toml"))[0]["Power"] == 2
    (tmp_path / "bad.json").write_text('{"me": {"Power": 9}}')
    with pytest.raises(InputError, match="missing value"):
        targets.load_set(str(tmp_path / "bad.json"))


@pytest.mark.slow
@pytest.mark.needs_data('ess-distribution')
def test_cli_paper_csv(cli):
    result = cli("targets", "list", "--set", "paper", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["name", *VALUES]
    assert len(rows) == 155 and rows[1][0] == "Ach" and rows[-1][0] == "close_Self-Transcendence_10"


@pytest.mark.slow
def test_cli_derive_and_errors(cli, tmp_path, data_dir):
    out = tmp_path / "t.csv"
    result = cli("targets", "derive", "--ess", str(data_dir / "ess.csv"), "--coding",
                 "importance", "--neighbours", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 1 + 14 * 4
    bad = tmp_path / "bad.csv"
    bad.write_text("idno,ipcrtiva\n1,2\n")
    result = cli("targets", "derive", "--ess", str(bad), "--out", str(tmp_path / "x.csv"))
    assert result.returncode == 2 and "missing column" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()
    result = cli("targets", "show", "close_Nope")
    assert result.returncode == 2 and "close_Nope" in result.stderr
