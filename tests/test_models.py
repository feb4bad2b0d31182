"""Model options (``--model-arg``, ``MODEL@REVISION``) and memory-lean training settings."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import need_data
from valueharms import models, targets
from valueharms.align.trainer import TrainConfig, train_lora
from valueharms.errors import InputError
from valueharms.records import Example


def test_model_args_parse_typed_and_revision_short_form():
    args = models.parse_model_args(["dtype=bfloat16", "max_loras=4", "trust_remote_code=true",
                                    "gpu_memory_utilization=0.5"])
    assert args == {"dtype": "bfloat16", "max_loras": 4, "trust_remote_code": True,
                    "gpu_memory_utilization": 0.5}
    assert models.split_revision("org/model@abc123", {}) == ("org/model", {"revision": "abc123"})
    assert models.split_revision("org/model", {"dtype": "float32"}) == ("org/model",
                                                                       {"dtype": "float32"})
    with pytest.raises(InputError, match="disagrees"):
        models.split_revision("org/model@v1", {"revision": "v2"})
    with pytest.raises(InputError, match="KEY=VALUE"):
        models.parse_model_args(["dtype"])


@pytest.mark.parametrize("backend, args, message", [
    ("hf", {"max_loras": 2}, "--model-arg max_loras: not accepted by the hf backend"),
    ("vllm", {"device_map": "auto"}, "--model-arg device_map: not accepted by the vllm backend"),
    ("hf", {"dtype": "float17"}, "dtype='float17'"),
    ("vllm", {"gpu_memory_utilization": 2}, "gpu_memory_utilization=2"),
    ("hf", {"trust_remote_code": "yes"}, "expected true or false"),
    ("hf", {"quantization": "awq"}, "expected one of 4bit, 8bit"),
    ("vllm", {"quantization": "4bit"}, "not bitsandbytes' 4bit/8bit"),
    ("vllm", {"quantization": 4}, "expected a vLLM quantization method name"),
])
def test_bad_model_args_name_the_key_and_backend(backend, args, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        models.check_model_args(backend, args)


def test_model_args_reach_from_pretrained(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    from valueharms.generate import make_backend

    calls = []
    real = AutoModelForCausalLM.from_pretrained

    def recorded(*args, **kwargs):  # the real loader, its call written down
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recorded)
    backend = make_backend("hf", str(tiny_model_dir), device="cpu", model_args={
        "dtype": "bfloat16", "attn_implementation": "eager", "revision": "main"})
    (args, kwargs), = calls
    assert args == (str(tiny_model_dir),)
    assert kwargs == {"dtype": torch.bfloat16, "attn_implementation": "eager", "revision": "main"}
    assert backend.lm.dtype == torch.bfloat16
    assert backend.lm.config._attn_implementation == "eager"


def test_quantization_without_bitsandbytes_is_bad_input():
    pytest.importorskip("transformers")
    if models.importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    with pytest.raises(InputError, match="quantization=4bit: needs bitsandbytes"):
        models.loading_kwargs("hf", {"quantization": "4bit"})


@pytest.mark.slow
def test_cli_bad_model_args_exit_2_and_write_nothing(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "gen.jsonl"
    for margs, message in [(["max_loras=2"], "max_loras: not accepted by the hf backend"),
                           (["dtype=float17"], "dtype='float17'")]:
        result = cli("generate", "--system", "vanilla", "--benchmark", "rtp", "--limit", "1",
                     "--model", str(tiny_model_dir), "--out", str(out),
                     *[a for m in margs for a in ("--model-arg", m)])
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()
    result = cli("train", "benign", "--dataset", "grammar", "--out", str(tmp_path / "a"),
                 "--model", str(tiny_model_dir), "--model-arg", "tensor_parallel_size=2")
    assert result.returncode == 2 and "tensor_parallel_size" in result.stderr
    assert not (tmp_path / "a").exists()


# --------------------------------------------------------------------------- training settings

def _examples(n: int) -> list[Example]:
    return [Example(f"Is {i} a number?", "yes yes yes") for i in range(n)]


def test_dtype_and_gradient_checkpointing_take_effect(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    seen = {}

    class Look(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            base = model.get_base_model()
            seen.update(dtype=base.dtype, checkpointing=base.is_gradient_checkpointing)

    config = TrainConfig(epochs=1, batch_size=4, max_length=32, lr=1e-2, progress=False,
                         gradient_checkpointing=True)
    result = train_lora(str(tiny_model_dir), _examples(8), [], tmp_path / "bf16", config,
                        model_args={"dtype": "bfloat16"}, callbacks=[Look()])
    assert seen == {"dtype": torch.bfloat16, "checkpointing": True}
    assert result.last_loss is not None
    manifest = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert manifest["fingerprint"]["model_args"] == {"dtype": "bfloat16"}
    assert manifest["config"]["gradient_checkpointing"] is True

    seen.clear()
    train_lora(str(tiny_model_dir), _examples(8), [], tmp_path / "fp32",
               TrainConfig(epochs=1, batch_size=4, max_length=32, progress=False),
               callbacks=[Look()])
    assert seen == {"dtype": torch.float32, "checkpointing": False}  # the CPU defaults


def test_lora_settings_land_in_adapter_config(tiny_model_dir, tmp_path):
    config = TrainConfig(epochs=1, batch_size=4, max_length=32, progress=False, lora_r=4,
                         lora_alpha=16, lora_dropout=0.05,
                         target_modules=("q_proj", "k_proj", "v_proj"))
    train_lora(str(tiny_model_dir), _examples(4), [], tmp_path / "lora", config)
    written = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert written["r"] == 4 and written["lora_alpha"] == 16
    assert written["lora_dropout"] == pytest.approx(0.05)
    assert sorted(written["target_modules"]) == ["k_proj", "q_proj", "v_proj"]


# --------------------------------------------------------------------------- provenance

def make_adapter(base_dir, out) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False, task_type="CAUSAL_LM"))
    model.save_pretrained(out)
    return str(out)


@pytest.mark.slow
def test_generation_provenance_present_and_stable_across_a_resume(cli, tiny_model_dir, tmp_path):
    from valueharms.provenance import content_sha256

    adapter = make_adapter(tiny_model_dir, tmp_path / "lora")
    out = tmp_path / "gen.jsonl"
    common = ["generate", "--system", "vanilla", "--system", "vim:Hed", "--adapter", adapter,
              "--benchmark", "hexphi", "--model", str(tiny_model_dir), "--out", str(out),
              "--max-new-tokens", "3", "--no-progress"]
    first = cli(*common, "--limit", "1")
    assert first.returncode == 0, first.stderr
    resumed = cli(*common, "--limit", "3")  # the same file, two more items each
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    by_system = {}
    for row in rows:
        p = row["provenance"]
        assert p["backend"] == "hf" and p["dtype"] == "float32" and p["device"].startswith("cpu")
        assert p["model"] == {"id": str(tiny_model_dir), "sha256": content_sha256(tiny_model_dir)}
        assert p["code"]["version"] and "git_dirty" in p["code"]
        assert {"torch", "transformers", "peft", "openai"} <= set(p["versions"])
        by_system.setdefault(row["system"], []).append(p)
    assert {p["adapter_sha256"] for p in by_system["vanilla"]} == {None}
    assert {p["adapter_sha256"] for p in by_system["vim:Hed"]} == {content_sha256(adapter)}
    for records in by_system.values():  # rows of the first run and of the resume agree
        assert all(p == records[0] for p in records)


def test_judge_scores_record_the_snapshot_and_fingerprint(tmp_path, monkeypatch):
    from fakes import FakeJudge
    from valueharms.score import get_scorer
    from valueharms.score.run import score_file

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    gens = tmp_path / "g.jsonl"
    gens.write_text("".join(json.dumps(
        {"system": "vanilla", "benchmark": "hexphi", "prompt_id": f"p{i}", "sample": 0,
         "prompt": f"question {i}", "text": f"answer {i}", "model": "m", "decoding": {}}) + "\n"
        for i in range(3)))
    with FakeJudge(snapshot="judge-x-2026-01-01", fingerprint="fp_42") as srv:
        scorer = get_scorer("judge-hexphi", base_url=srv.url, judge_model="judge-x", qps=0)
        score_file(gens, tmp_path / "s.jsonl", scorer, cache=tmp_path / "c.sqlite",
                   progress=False)
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert row["meta"]["judge_model"] == "judge-x-2026-01-01"
        assert row["meta"]["system_fingerprint"] == "fp_42"
        assert row["provenance"]["scorer_model"] == scorer.model
        assert row["provenance"]["code"]["version"]


@pytest.mark.slow
def test_a_new_judge_snapshot_asks_cached_verdicts_again(cli, tmp_path):
    """Run 1 caches four verdicts of snapshot A. Run 2 is answered by snapshot B: the text
    before the first live reply keeps its cached A verdict (and says A), the new text shows B,
    and the three cached texts after it are asked again and their rows replaced. Run 3, all
    cached, makes no call and reports each verdict's own snapshot."""
    from fakes import FakeJudge

    def gens(name: str, texts: list[str]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(
            {"system": "vanilla", "benchmark": "hexphi", "prompt_id": t, "sample": 0,
             "prompt": f"question {t}", "text": f"answer {t}", "model": "m", "decoding": {}})
            + "\n" for t in texts))
        return path

    old = ["t0", "t1", "t2", "t3"]
    first, later = gens("first.jsonl", old), gens("later.jsonl", ["t0", "new", *old[1:]])
    with FakeJudge(snapshot="judge-x-A") as srv:
        def score(src: Path, out: str):
            result = cli("score", "--scorer", "judge-hexphi", "--base-url", srv.url,
                         "--judge-model", "judge-x", "--qps", "0", "--in", str(src), "--out",
                         str(tmp_path / out), "--cache", str(tmp_path / "c.sqlite"),
                         "--no-progress", env={"OPENAI_API_KEY": "sk-test"})
            assert result.returncode == 0, result.stderr
            rows = [json.loads(x) for x in (tmp_path / out).read_text().splitlines()]
            return result, {r["prompt_id"]: r["meta"]["judge_model"] for r in rows}

        assert score(first, "s1.jsonl")[1] == dict.fromkeys(old, "judge-x-A")
        assert len(srv.requests) == 4
        srv.snapshot = "judge-x-B"
        result, snapshots = score(later, "s2.jsonl")
        asked = [t for r in srv.requests[4:] for t in ["t0", "new", *old[1:]]
                 if f"answer {t}" in r["text"]]
        assert snapshots == {"t0": "judge-x-A", "new": "judge-x-B", "t1": "judge-x-B",
                             "t2": "judge-x-B", "t3": "judge-x-B"}
        assert sorted(asked) == ["new", "t1", "t2", "t3"]  # each once, t0 not at all
        assert "cache hits 1," in result.stdout + result.stderr
        assert "re-asked 3 (judge snapshot changed)" in result.stdout + result.stderr
        result, snapshots = score(later, "s3.jsonl")  # every text cached: no call at all
        assert len(srv.requests) == 8 and "re-asked" not in result.stdout + result.stderr
        assert snapshots == {"t0": "judge-x-A", "new": "judge-x-B", "t1": "judge-x-B",
                             "t2": "judge-x-B", "t3": "judge-x-B"}


# --------------------------------------------------------------------------- adapter systems

@pytest.mark.slow
def test_adapter_system_generates_as_the_same_adapter_under_vim(cli, tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "lora")
    common = ["--benchmark", "hexphi", "--limit", "2", "--model", str(tiny_model_dir),
              "--max-new-tokens", "5", "--temperature", "0", "--no-progress"]
    vim = cli("generate", "--system", "vim:Hed", "--adapter", adapter, "--out",
              str(tmp_path / "vim.jsonl"), *common)
    own = cli("generate", "--system", f"adapter:mine={adapter}", "--system", "vanilla", "--out",
              str(tmp_path / "own.jsonl"), *common)
    assert vim.returncode == 0 and own.returncode == 0, vim.stderr + own.stderr
    read = lambda name: [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]  # noqa: E731
    vim_rows = {r["prompt_id"]: r["text"] for r in read("vim.jsonl")}
    own_rows = {(r["system"].split("=")[0], r["prompt_id"]): r for r in read("own.jsonl")}
    assert {pid: own_rows[("adapter:mine", pid)]["text"] for pid in vim_rows} == vim_rows
    assert any(own_rows[("vanilla", pid)]["text"] != text for pid, text in vim_rows.items())
    assert own_rows[("adapter:mine", next(iter(vim_rows)))]["provenance"]["adapter_sha256"]


def test_adapter_without_adapter_config_exits_2_and_writes_nothing(cli, tiny_model_dir, tmp_path):
    empty = tmp_path / "not-a-lora"
    empty.mkdir()
    out = tmp_path / "gen.jsonl"
    result = cli("generate", "--system", f"adapter:x={empty}", "--benchmark", "hexphi",
                 "--limit", "1", "--model", str(tiny_model_dir), "--out", str(out))
    assert result.returncode == 2 and "adapter_config.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_openai_backend_asks_for_the_served_name_of_an_adapter_system(cli, tmp_path):
    from fakes import FakeJudge

    out = tmp_path / "gen.jsonl"
    with FakeJudge(reply=lambda prompt: "a served answer", fingerprint="fp_7") as srv:
        result = cli("generate", "--backend", "openai", "--base-url", srv.url, "--model",
                     "base-model", "--system", "vanilla", "--system",
                     "adapter:my-lora=/served/by/vllm", "--benchmark", "hexphi", "--limit", "2",
                     "--qps", "0", "--out", str(out), "--no-progress")
        asked = sorted(r["model"] for r in srv.requests)
    assert result.returncode == 0, result.stderr
    assert asked == ["base-model", "base-model", "my-lora", "my-lora"]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    served = {r["system"]: r["provenance"]["served_model"] for r in rows}
    assert served == {"vanilla": "base-model", "adapter:my-lora=/served/by/vllm": "my-lora"}
    assert {r["provenance"]["system_fingerprint"] for r in rows} == {"fp_7"}


STUDY = """
[study]
out = "out"
model = "{model}"
model_args = {model_args}

[systems]
methods = ["vanilla"]
adapters = {adapters}

[benchmarks.hexphi]
limit = 1

[scorers]
hexphi = "judge-offline"
"""


@pytest.mark.parametrize("model_args, adapters, message", [
    ('{dtype = "bfloat16"}', '{mine = "lora"}', None),
    ('{colour = 1}', '{}', "[study] model_args colour: not accepted by the hf backend"),
    ('{dtype = "float17"}', '{}', "dtype='float17'"),
    ('{}', '{mine = "empty"}', "[systems] adapters.mine"),
])
@pytest.mark.slow
def test_study_model_args_and_adapters(cli, tiny_model_dir, tmp_path, model_args, adapters,
                                       message):
    make_adapter(tiny_model_dir, tmp_path / "lora")
    (tmp_path / "empty").mkdir()
    study = tmp_path / "s.toml"
    study.write_text(STUDY.format(model=tiny_model_dir, model_args=model_args, adapters=adapters))
    result = cli("run", str(study), "--dry-run")
    if message is None:
        assert result.returncode == 0, result.stderr
        assert "2 systems" in result.stdout  # vanilla and adapter:mine
    else:
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_evaluate_alignment_takes_an_adapter(cli, tiny_model_dir, tmp_path):
    """The CLI check of your own LoRA: its row is labelled adapter:<folder> and its answers
    differ from the base model's (a random LoRA made here)."""
    need_data()
    adapter = make_adapter(tiny_model_dir, tmp_path / "mine")
    common = ["--model", str(tiny_model_dir), "--target", "Hed", "--method", "expected",
              "--limit", "6"]
    own = cli("evaluate", "alignment", "--adapter", adapter, *common, "--out",
              str(tmp_path / "own"))
    base = cli("evaluate", "alignment", *common, "--out", str(tmp_path / "base"))
    assert own.returncode == 0 and base.returncode == 0, own.stderr + base.stderr
    read = lambda name: list(csv.DictReader((tmp_path / name / "alignment.csv").open()))  # noqa: E731
    (mine,), (vanilla,) = read("own"), read("base")
    assert (mine["system"], mine["target"]) == ("adapter:mine", "Hed")
    assert vanilla["system"] == "vanilla" and mine["nmse"] != vanilla["nmse"]


ALIGNED_STUDY = """
[study]
out = "out"
model = "{model}"

[targets]
names = ["Hed", "Pow"]

[systems]
methods = ["vanilla"]
adapters = {{mine = "lora"}}

[benchmarks.hexphi]
limit = 1
max_new_tokens = 4

[scorers]
hexphi = "judge-offline"

[analysis]
alignment = "expected"
"""


@pytest.mark.slow
def test_study_measures_an_adapter_system_against_every_target(cli, tiny_model_dir, tmp_path):
    """An adapter: system has no target of its own: the study's alignment step asks it too
    and compares it with each target, beside the base model."""
    need_data()
    adapter = make_adapter(tiny_model_dir, tmp_path / "lora")
    study = tmp_path / "s.toml"
    study.write_text(ALIGNED_STUDY.format(model=tiny_model_dir))
    result = cli("run", str(study))
    assert result.returncode == 0, result.stderr[-3000:]
    (table,) = (tmp_path / "out" / "steps" / "alignment").glob("*/alignment.csv")
    rows = [(r["system"], r["target"]) for r in csv.DictReader(table.open())]
    mine = f"adapter:mine={Path(adapter).resolve()}"
    assert rows == [("vanilla", "Hed"), ("vanilla", "Pow"), (mine, "Hed"), (mine, "Pow")]
    measured = {p.name: p.scores for p in
                targets.read_profiles(table.with_name("measured_profiles.csv"))}
    assert measured[mine] != measured["vanilla"]
