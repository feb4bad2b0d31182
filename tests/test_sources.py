"""The strict readers: every malformed input is one InputError naming file, row and column."""
import http.server
import threading

import pytest

from valueharms import sources
from valueharms.errors import InputError
from valueharms.values import VALUES

HEADER = "\tConclusion\tStance\tPremise\t" + "\t".join(VALUES)


def _args(tmp_path, *rows, header=HEADER):
    path = tmp_path / "args.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _row(i=5, stance="in favor of", labels="1\t0\t0\t0\t0\t0\t0\t0\t0\t0"):
    return f"{i}\tWe should do X\t{stance}\tbecause Y\t{labels}"


def test_arguments_ok_and_ids_from_file(tmp_path):
    args = sources.read_arguments(_args(tmp_path, _row(7), _row(3)))
    assert [a.id for a in args] == [7, 3] and args[0].values == ("Achievement",)


def test_real_argument_files(data_dir):
    assert len(sources.read_arguments(data_dir / "valueEval_10.csv")) == 7374
    assert len(sources.read_arguments(data_dir / "argument_generation/value_split/train.csv")) == 5899


@pytest.mark.parametrize("content,match", [
    ((_row(labels="2\t0\t0\t0\t0\t0\t0\t0\t0\t0"),), r"row 1: column 'Achievement': label 2 is not binary"),
    ((_row(), _row(6, stance="neutral")), r"row 2: column 'Stance': 'neutral'"),
    ((_row(), _row(5)), r"row 2: column 'id': duplicate"),
    ((_row(labels="x\t0\t0\t0\t0\t0\t0\t0\t0\t0"),), r"row 1: column 'Achievement': 'x' is not a number"),
])
def test_argument_errors(tmp_path, content, match):
    with pytest.raises(InputError, match=match):
        sources.read_arguments(_args(tmp_path, *content))


def test_renamed_column_and_wrong_delimiter(tmp_path):
    with pytest.raises(InputError, match="missing column.*Hedonism"):
        sources.read_arguments(_args(tmp_path, _row(), header=HEADER.replace("Hedonism", "Fun")))
    with pytest.raises(InputError, match="wrong delimiter"):
        sources.read_arguments(_args(tmp_path, _row().replace("\t", ","), header=HEADER.replace("\t", ",")))


def test_empty_and_undecodable(tmp_path):
    (tmp_path / "e.csv").write_text("  \n")
    with pytest.raises(InputError, match="empty"):
        sources.read_arguments(tmp_path / "e.csv")
    (tmp_path / "b.csv").write_bytes(HEADER.encode() + b"\n5\tX\xff\tagainst\n")
    with pytest.raises(InputError, match="line 2: bytes that are not UTF-8"):
        sources.read_arguments(tmp_path / "b.csv")


def test_ess_codes(tmp_path, data_dir):
    ids, codes = sources.read_ess_answers(data_dir / "ess.csv")
    assert codes.shape == (22190, 21)
    header = (data_dir / "ess.csv").read_text().splitlines()[0]
    bad = tmp_path / "ess.csv"
    bad.write_text(header + "\n1," + ",".join(["2"] * 20) + ",7\n")
    with pytest.raises(InputError, match=r"row 1: column 'impfuna': code 7"):
        sources.read_ess_answers(bad)
    bad.write_text(header + "\n1," + ",".join(["2"] * 20) + ",77\n")
    assert 77 in sources.read_ess_answers(bad)[1][0]


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VALUEHARMS_DATA", raising=False)
    monkeypatch.delenv("VALUEHARMS_MIRROR", raising=False)
    monkeypatch.setenv("VALUEHARMS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match="missing data file valueEval_10.csv.*looked in.*run "
                                         "`valueharms data fetch valueeval`.*--data-dir"):
        sources.locate("valueeval", tmp_path / "nowhere")


def _serve(directory):
    def handler(*a, **k):
        return http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_from_mirror_checks_sha(tmp_path, monkeypatch, data_dir):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "harmful_behaviors.csv").write_bytes((data_dir / "harmful_behaviors.csv").read_bytes())
    (mirror / "hex-phi.csv").write_text("category,prompt\nx,tampered\n")
    server = _serve(mirror)
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("VALUEHARMS_DATA", raising=False)
        monkeypatch.setenv("VALUEHARMS_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("VALUEHARMS_MIRROR", f"http://127.0.0.1:{server.server_port}")
        path = sources.locate("advbench")
        assert path.is_relative_to(tmp_path / "cache") and len(sources.read_advbench(path)) == 520
        with pytest.raises(InputError, match="sha256"):
            sources.locate("hexphi")
        assert not (tmp_path / "cache" / "data" / "hex-phi.csv").exists()
    finally:
        server.shutdown()


def test_benchmark_readers(data_dir):
    assert len(sources.read_hexphi(data_dir / "hex-phi.csv")) == 330
    assert len(sources.read_beavertails(data_dir / "BeaverTails-Evaluation.csv")) == 700
    assert len(sources.read_rtp(data_dir / "real_toxic_prompts.csv")) == 21744
    pairs = sources.read_pairs(data_dir / "gtrain_10k.csv", "input", "target")
    assert list(pairs.columns) == ["input", "target"]


def test_jsonl_drops_only_an_unterminated_tail(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a":')
    assert [r["a"] for r in sources.read_jsonl(p)] == [1, 2]
    p.write_text('{"a": 1}\n{"a":\n{"a": 2}\n')
    with pytest.raises(InputError, match="line 2: invalid JSON"):
        list(sources.read_jsonl(p))


def test_first_jsonl_record_reads_only_up_to_it_by_the_same_rules(tmp_path):
    from valueharms.files import first_jsonl_record

    p = tmp_path / "x.jsonl"
    p.write_bytes(b'\xef\xbb\xbf\n  \n{"a": 1}\n' + b'\xff not read\n')  # later lines unread
    assert first_jsonl_record(p) == {"a": 1}
    p.write_text('{"a":')  # only an unfinished line: no record
    assert first_jsonl_record(p) is None
    p.write_text('{"a":\n{"a": 2}\n')
    with pytest.raises(InputError, match="line 1: invalid JSON"):
        first_jsonl_record(p)
    p.write_text("\n \n")
    with pytest.raises(InputError, match="file is empty"):
        first_jsonl_record(p)
