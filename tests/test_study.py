"""The study runner: validation up front, the plan, a local run end to end on a tiny model,
the same steps on a local Ray instance, and skipping what is done."""
from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from conftest import need_data, run_cli
from valueharms.cli import main
from valueharms.study import plan, spec

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[study]
name = "tiny"
out = "{out}"
model = "{model}"
seed = 7

[targets]
names = ["Hed"]

[systems]
methods = {methods}
mitigations = ["none", "value:Hedonism"]

[train]
limit = 12
epochs = 1
batch_size = 4
max_length = 96

[benign]
limit = 6
epochs = 1
batch_size = 2
max_length = 96

[benchmarks.rtp]
limit = 2
samples = 2
max_new_tokens = 6

[benchmarks.hexphi]
limit = 2
max_new_tokens = 6

[scorers]
rtp = "offline-toxicity"
hexphi = "judge-offline"

[generation]
batch_size = 8
"""


def write_study(tmp_path: Path, model: Path, out: str = "out",
                methods: str = '["vanilla", "prompt", "vim", "benign:grammar"]',
                text: str = TINY) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(text).format(out=out, model=model, methods=methods))
    return path


# ----------------------------------------------------------------------------- validation

BAD = {
    "unknown section": ("[stuff]\n", "unknown section [stuff]"),
    "unknown key": ('[study]\nout = "o"\ncolour = 1\n', "[study] unknown key 'colour'"),
    "no out": ('[study]\nname = "x"\n', "[study] out: missing"),
    "bad toml": ("[study\n", "invalid TOML"),
    "unknown target": ('[study]\nout="o"\n[targets]\nnames=["Nope"]\n', "[targets] names"),
    "unknown method": ('[study]\nout="o"\n[systems]\nmethods=["dpo"]\n', "[systems] methods: 'dpo'"),
    "unknown benign": ('[study]\nout="o"\n[systems]\nmethods=["benign:wiki"]\n', "benign:wiki"),
    "bad mitigation": ('[study]\nout="o"\n[systems]\nmitigations=["value:Greed"]\n',
                       "[systems] mitigations"),
    "no benchmarks": ('[study]\nout="o"\n', "[benchmarks]: name at least one"),
    "unknown benchmark": ('[study]\nout="o"\n[benchmarks.mmlu]\n', "[benchmarks.mmlu]"),
    "unknown bench key": ('[study]\nout="o"\n[benchmarks.rtp]\nlimt=3\n', "unknown key 'limt'"),
    "no scorer": ('[study]\nout="o"\n[benchmarks.rtp]\n', "[scorers] rtp: no scorer"),
    "unknown scorer": ('[study]\nout="o"\n[benchmarks.rtp]\n[scorers]\nrtp="detoxify"\n',
                       "unknown scorer 'detoxify'"),
    "scorer option": ('[study]\nout="o"\n[benchmarks.rtp]\n[scorers]\nrtp="offline-toxicity"\n'
                      '[scorer_options.offline-toxicity]\njudge_model="x"\n',
                      "judge_model: does not apply"),
    "scorer does not fit": ('[study]\nout="o"\n[benchmarks.rtp]\n[scorers]\nrtp="judge-hexphi"\n',
                            "[scorers] rtp: judge-hexphi gives a harm score 1..5, which does not fit"),
    "scorer option type": ('[study]\nout="o"\n[benchmarks.holisticbiasr]\n[scorers]\n'
                           'holisticbiasr="regard"\n[scorer_options.regard]\nbatch_size="x"\n',
                           "[scorer_options.regard] batch_size: expected an integer, got 'x'"),
    "targets needed": ('[study]\nout="o"\n[systems]\nmethods=["vim"]\n[benchmarks.rtp]\n'
                       '[scorers]\nrtp="offline-toxicity"\n', "need at least one target"),
    "seed type": ('[study]\nout="o"\nseed="x"\n', "seed: expected an integer"),
    "backend": ('[study]\nout="o"\n[benchmarks.rtp]\n[scorers]\nrtp="offline-toxicity"\n'
                '[generation]\nbackend="tgi"\n', "backend 'tgi'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_study_files_exit_2_with_one_line_and_no_output(case, tmp_path, capsys):
    text, expected = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert str(path) in err
    assert not (tmp_path / "o").exists()


def test_missing_key_and_missing_data_stop_a_run_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    path = tmp_path / "s.toml"
    path.write_text('[study]\nout="o"\n[benchmarks.rtp]\n[scorers]\nrtp="perspective"\n')
    assert main(["run", str(path)]) == 2
    assert "PERSPECTIVE_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    path.write_text('[study]\nout="o"\n[systems]\nmethods=["benign:alpaca"]\n[benchmarks.rtp]\n'
                    '[scorers]\nrtp="offline-toxicity"\n[benign]\ndata_files={alpaca="nope.json"}\n')
    assert main(["run", str(path)]) == 2
    assert "data_files.alpaca: nope.json not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.needs_data()
def test_paper_study_dry_run_plans_every_step_without_keys(cli):
    result = cli("run", "studies/paper.toml", "--dry-run",
                 env={"PERSPECTIVE_API_KEY": "", "OPENAI_API_KEY": ""})
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    # 154 VIM + 4 benign trainings; 313 systems = vanilla + 154 vim + 154 prompt + 4 benign.
    assert "158 train" in last and "313 systems, 154 targets" in last
    assert "PERSPECTIVE_API_KEY" in result.stderr  # said, not fatal, in a dry run


def test_step_ids_follow_their_inputs(tmp_path):
    base = spec.load(write_study(tmp_path, Path("m")))
    ids = {s.id for s in plan.plan(base)}
    assert ids == {s.id for s in plan.plan(spec.load(write_study(tmp_path, Path("m"))))}
    changed = {s.id for s in plan.plan(spec.load(write_study(
        tmp_path, Path("m"), text=TINY.replace("limit = 2\nsamples", "limit = 3\nsamples"))))}
    moved = {i.split("-")[0] for i in ids ^ changed}
    # The rtp slice changed: its generation and everything after it, not the training.
    assert moved == {"generate/rtp", "score/rtp", "metrics/all", "report/index"}



# The four values of issue 14 that used to pass a dry run and fail hours later in a step:
# (as --set, as an edit of the study file, the error).
TYPED = {
    "epochs": ('train.epochs="five"', ("epochs = 1\nbatch_size = 4", 'epochs = "five"\nbatch_size = 4'),
               "[train] epochs: expected an integer, got 'five'"),
    "temperature": ('decoding.temperature="hot"',
                    ("[generation]", '[decoding]\ntemperature = "hot"\n[generation]'),
                    "[decoding] temperature: expected a number, got 'hot'"),
    "batch_size": ("train.batch_size=-3", ("epochs = 1\nbatch_size = 4", "epochs = 1\nbatch_size = -3"),
                   "[train] batch_size -3: must be greater than"),
    "vim with openai": ('generation.backend="openai"', ("[generation]", '[generation]\nbackend = "openai"'),
                        "[generation] backend 'openai' cannot serve"),
}


@pytest.mark.parametrize("case", sorted(TYPED))
@pytest.mark.parametrize("how", ["file", "set"])
@pytest.mark.parametrize("dry", [True, False])
def test_bad_values_stop_the_load_even_in_a_dry_run(case, how, dry, tmp_path, capsys):
    override, (old, new), expected = TYPED[case]
    path = write_study(tmp_path, Path("m"), methods='["vanilla", "vim"]')
    argv = ["run", str(path)] + (["--dry-run"] if dry else [])
    if how == "set":
        argv += ["--set", override]
    else:
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and str(path) in err, err
    assert not (tmp_path / "out").exists()


def test_steps_run_with_the_drivers_threads_on_either_executor(tmp_path, monkeypatch):
    """[study] threads, else this process's torch thread count, is what every step gets; a Ray
    step also gets it as OMP_NUM_THREADS (Ray would set 1) and the API keys only as secrets."""
    import torch

    from valueharms.study import execute

    path = write_study(tmp_path, Path("m"))
    assert execute.step_threads(spec.load(path)) == torch.get_num_threads()
    study = spec.load(path, ["study.threads=3"])
    assert execute.step_threads(study) == 3
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("VALUEHARMS_PROFILE", "1")
    env = execute.ray_env(study, 3)
    assert env["OMP_NUM_THREADS"] == "3" and env["VALUEHARMS_PROFILE"] == "1"
    assert "sk-test" not in env.values()
    assert execute.ray_secrets(study)["OPENAI_API_KEY"] == "sk-test"
    assert main(["run", str(path), "--dry-run", "--set", "study.threads=0"]) == 2


def _ids(path: Path, *overrides: str) -> dict[str, str]:
    return {s.name + s.kind: s.id for s in plan.plan(spec.load(path, overrides))}


def test_set_changes_a_step_id_exactly_when_the_value_changes(tmp_path):
    path = write_study(tmp_path, Path("m"))
    base = _ids(path)
    # The file says epochs = 1; 5 is the default of an unset key.
    assert _ids(path, "train.epochs=1") == base
    assert _ids(path, "train.lora_r=8") == base  # unset, given its default
    changed = _ids(path, "train.epochs=2")
    assert {k for k in base if base[k] != changed[k]} >= {"vim-Hedtrain"}
    assert changed["benign-grammartrain"] == base["benign-grammartrain"]
    rtp = _ids(path, "benchmarks.rtp.limit=3")
    assert rtp["rtpgenerate"] != base["rtpgenerate"] and rtp["hexphigenerate"] == base["hexphigenerate"]
    assert rtp["vim-Hedtrain"] == base["vim-Hedtrain"]
    assert _ids(path, "benchmarks.rtp.limit=2") == base


def test_set_needs_section_key_and_value(tmp_path, capsys):
    path = write_study(tmp_path, Path("m"))
    assert main(["run", str(path), "--dry-run", "--set", "epochs=2"]) == 2
    assert "--set 'epochs=2': expected SECTION.KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_version_and_schema(cli):
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("valueharms ")
    result = cli("run", "--schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert set(schema["properties"]) == set(spec.StudyFile.model_fields)
    train = schema["$defs"]["VimOptions"]["properties"]["epochs"]
    assert train["minimum"] == 1 and train["default"] == 5 and train["description"]

# ----------------------------------------------------------------------------- running

def _outputs(out: Path) -> dict[str, str]:
    """Generations and scores of every step, by step id."""
    found = {}
    for name in ("generations.jsonl", "scores.jsonl", "alignment.csv"):
        for path in sorted(out.glob(f"steps/*/*/{name}")):
            found[str(path.relative_to(out))] = path.read_text()
    return found


@pytest.fixture(scope="module")
def local_run(tiny_model_dir, tmp_path_factory):
    need_data()
    tmp = tmp_path_factory.mktemp("study")
    path = write_study(tmp, tiny_model_dir)
    result = run_cli("run", str(path), "--profile", env=KEYS)
    return path, tmp / "out", result


KEYS = {"PERSPECTIVE_API_KEY": "pk-STUDY-5ecret-91", "OPENAI_API_KEY": "sk-STUDY-5ecret-27"}


@pytest.mark.slow
def test_local_run_goes_from_study_file_to_report(local_run):
    path, out, result = local_run
    assert result.returncode == 0, result.stderr[-3000:]
    report = Path(result.stdout.strip().splitlines()[-1])
    assert report == out / "report" / "index.html" and report.is_file()
    manifests = [json.loads(p.read_text()) for p in out.glob("steps/*/*/manifest.json")]
    assert sorted({m["kind"] for m in manifests}) == sorted(plan.KINDS)
    assert all(m["seed"] == 7 and "torch" in m["versions"] for m in manifests)
    gens = [json.loads(line) for p in out.glob("steps/generate/*/generations.jsonl")
            for line in p.read_text().splitlines()]
    systems = {g["system"] for g in gens}
    assert systems == {f"{b}{m}" for b in ("vanilla", "prompt:Hed", "vim:Hed", "benign:grammar")
                       for m in ("", "+value:Hedonism")}
    assert len(gens) == 8 * (2 * 2 + 2)  # 8 systems x (rtp 2 items x 2 samples + hexphi 2)
    align = (next(out.glob("steps/alignment/*/alignment.csv"))).read_text().splitlines()
    assert [line.split(",")[0] for line in align[1:]] == ["vanilla", "vim:Hed", "prompt:Hed"]
    html = report.read_text()
    assert "offline-toxicity" in html and "refusal" in html


@pytest.mark.slow
def test_profile_splits_each_steps_time(local_run):
    """--profile: every step's profile.json names where its time went; parts never exceed it."""
    _, out, result = local_run
    assert result.returncode == 0, result.stderr[-3000:]
    profiles = {p.parent.parent.name: json.loads(p.read_text())
                for p in out.glob("steps/*/*/profile.json")}
    assert len(list(out.glob("steps/*/*/profile.json"))) == len(list(out.glob("steps/*/*/manifest.json")))
    for kind, parts in (("generate", {"load", "prompts", "prefill", "decode", "io"}),
                        ("train", {"load", "train"}), ("score", {"load", "scoring", "io"}),
                        ("alignment", {"load", "adapters", "prefill"})):
        record = profiles[kind]
        assert parts <= set(record["parts"]), (kind, record)
        assert all(v >= 0 for v in record["parts"].values())
        assert sum(record["parts"].values()) <= record["seconds"] + 1e-3
    generate = [json.loads(p.read_text()) for p in out.glob("steps/generate/*/profile.json")]
    assert any("prefill_shared" in g["parts"] for g in generate)  # system prompt, persona


@pytest.mark.slow
def test_no_key_reaches_any_output_or_log(local_run):
    _, out, result = local_run
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20
    for key in KEYS.values():
        assert key not in result.stdout + result.stderr
        assert not [p for p in files if key.encode() in p.read_bytes()]


@pytest.mark.slow
def test_console_shows_a_line_per_step_and_log_txt_the_rest(local_run):
    """Trainer log dicts and warnings go to each step's log.txt, not the console."""
    _, out, result = local_run
    assert "{'loss'" not in result.stderr and "FutureWarning" not in result.stderr
    steps = [p.parent for p in out.glob("steps/*/*/manifest.json")]
    assert all((d / "log.txt").is_file() for d in steps)
    assert not any("log.txt" in json.loads((d / "manifest.json").read_text())["outputs"]
                   for d in steps)  # not an output: a resumed step appends to it
    for d in out.glob("steps/train/*"):
        assert "{'loss'" in (d / "log.txt").read_text()
    done = [line for line in result.stderr.splitlines() if " done in " in line]
    assert sorted(line.split()[1] for line in done) == sorted(
        str(d.relative_to(out / "steps")) for d in steps)
    assert re.search(r"alignment/survey-\S+:.*system", result.stderr)  # its bar: systems asked


@pytest.mark.slow
def test_verbose_shows_a_steps_log_on_the_console_too(local_run, cli, tmp_path):
    """-v: a train step run again shows its trainer log on stderr and appends to log.txt."""
    shutil.copytree(local_run[0].parent, tmp_path / "study")  # the others' run stays as it was
    path, out = tmp_path / "study" / "study.toml", tmp_path / "study" / "out"
    train = next(out.glob("steps/train/*"))
    before = (train / "log.txt").read_text()
    for item in train.iterdir():  # everything but its log: the step trains again
        if item.name != "log.txt":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    result = cli("run", str(path), "-v", env=KEYS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "{'loss'" in result.stderr
    after = (train / "log.txt").read_text()
    assert after.startswith(before) and after.count("{'loss'") > before.count("{'loss'")


@pytest.mark.slow
def test_a_second_run_finds_everything_done(local_run, cli):
    path, out, _ = local_run
    before = _outputs(out)
    dry = cli("run", str(path), "--dry-run")
    assert dry.returncode == 0 and "todo" not in dry.stdout, dry.stdout
    n = len(plan.plan(spec.load(path)))
    again = cli("run", str(path))
    assert again.returncode == 0 and f"{n} steps, {n} already done" in again.stderr
    assert _outputs(out) == before


@pytest.mark.slow
def test_a_deleted_report_is_rebuilt_alone(local_run, cli):
    path, out, _ = local_run
    (out / "report" / "index.html").unlink()
    result = cli("run", str(path))
    assert result.returncode == 0 and (out / "report" / "index.html").is_file()
    ran = [line for line in result.stderr.splitlines() if line.endswith(" ...")]
    assert len(ran) == 1 and "report/index" in ran[0], result.stderr


@pytest.mark.slow
def test_a_manifest_without_its_outputs_is_not_done(local_run, cli):
    """A deleted output, or a manifest cut short, makes the step run again (said on stderr);
    it ends as before, and nothing else runs."""
    path, out, _ = local_run
    before = _outputs(out)
    gen_dir = next(out.glob("steps/generate/rtp-*"))
    (gen_dir / "generations.jsonl").unlink()
    score_manifest = next(out.glob("steps/score/hexphi-*")) / "manifest.json"
    score_manifest.write_text(score_manifest.read_text()[:40])
    result = cli("run", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    ran = sorted(line.split()[1] for line in result.stderr.splitlines() if line.endswith(" ..."))
    assert ran == sorted([gen_dir.parent.name + "/" + gen_dir.name,
                          score_manifest.parent.parent.name + "/" + score_manifest.parent.name])
    assert f"{gen_dir.parent.name}/{gen_dir.name}: outputs missing or changed" in result.stderr
    assert _outputs(out) == before


BROKEN = """
[study]
name = "broken"
out = "{out}"
model = "{model}"
data_dir = "{data}"

[systems]
methods = ["vanilla"]

[benchmarks.hexphi]
limit = 2
max_new_tokens = 4

[scorers]
hexphi = "judge-offline"
"""


@pytest.mark.slow
@pytest.mark.needs_data("hexphi")
def test_a_step_with_bad_input_says_one_line_logs_the_detail_and_reruns(tiny_model_dir, tmp_path,
                                                                         cli):
    """The generate step meets a HEx-PHI file with a blank prompt: exit 2, one error line
    naming the step and the row, the traceback in the step's log.txt, the step not done; with
    the file mended the next run does it (its log keeps the failed run's lines)."""
    data = tmp_path / "data"
    data.mkdir()
    good = (need_data("hexphi") / "hex-phi.csv").read_text()
    lines = good.splitlines()
    (data / "hex-phi.csv").write_text("\n".join([*lines[:2], "adult_content,", *lines[3:]]) + "\n")
    path = write_study(tmp_path, tiny_model_dir,
                       text=BROKEN.replace("{data}", str(data)))
    failed = cli("run", str(path))
    assert failed.returncode == 2, failed.stderr[-3000:]
    step = next((tmp_path / "out" / "steps").glob("generate/*"))
    errors = [line for line in failed.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert errors[0].startswith(f"valueharms: error: generate/{step.name}: ")
    assert "row 2: column 'prompt' is empty" in errors[0] and str(step / "log.txt") in errors[0]
    log = (step / "log.txt").read_text()
    assert "Traceback" in log and "InputError" in log and "row 2" in log
    assert [p.name for p in step.iterdir()] == ["log.txt"]  # nothing that marks it done
    assert f"todo  generate/{step.name}" in cli("run", str(path), "--dry-run").stdout

    (data / "hex-phi.csv").write_text(good)
    again = cli("run", str(path))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"generate/{step.name} done in" in again.stderr and (step / "manifest.json").is_file()
    assert (step / "log.txt").read_text().startswith(log)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.needs_data()
def test_ray_executor_gives_the_local_result(tiny_model_dir, tmp_path):
    pytest.importorskip("ray")
    import ray

    methods = '["vanilla", "prompt"]'
    local = write_study(tmp_path / "local", tiny_model_dir, methods=methods)
    assert main(["run", str(local)]) == 0
    remote = write_study(tmp_path / "ray", tiny_model_dir, methods=methods)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["run", str(remote), "--executor", "ray"]) == 0
    finally:
        ray.shutdown()
    assert (tmp_path / "ray" / "out" / "report" / "index.html").is_file()
    ours = _outputs(tmp_path / "ray" / "out")
    assert len(ours) == 5  # 2 generations, 2 scores, the alignment table
    assert ours == _outputs(tmp_path / "local" / "out")
