"""The LoRA trainer: labels, shortening, padding, best epoch, adapters, resume, CLI."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from valueharms.align.trainer import IGNORE, TrainConfig, collator, encode, last_checkpoint, train_lora
from valueharms.chat import render_prompt
from valueharms.errors import InputError
from valueharms.models import load_tokenizer
from valueharms.records import Example

FAST = dict(lr=1e-2, batch_size=4, max_length=48, save_steps=4, progress=False)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def examples(n: int, answer: str = "yes yes yes", start: int = 0) -> list[Example]:
    return [Example(f"Is {i} a number? " * (1 + i % 3), answer, {"i": i})
            for i in range(start, start + n)]


VALID = examples(4, "zebra quantum violet harbour lemon", 100)


def adapter_weights(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "adapter_model.safetensors"))


def log_records(path) -> list[dict]:
    return [json.loads(line) for line in Path(path, "train_log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- tokenising

def test_labels_fall_on_the_completion_and_eos_only(tokenizer):
    ex = Example("Name a colour.", "Blue, like the sky.")
    enc = encode(ex, tokenizer, max_length=512)
    prompt = tokenizer(render_prompt(ex.prompt, tokenizer), add_special_tokens=False)["input_ids"]
    completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
    assert enc.input_ids == prompt + completion + [tokenizer.eos_token_id]
    assert enc.labels == [IGNORE] * len(prompt) + completion + [tokenizer.eos_token_id]
    assert not enc.shortened and not enc.completion_cut


def test_long_prompts_lose_tokens_from_the_left_never_the_completion(tokenizer):
    ex = Example("word " * 200, "The short answer.")
    full = encode(ex, tokenizer, max_length=4096)
    enc = encode(ex, tokenizer, max_length=40)
    n_completion = sum(label != IGNORE for label in full.labels)
    assert len(enc.input_ids) == 40 and enc.shortened and not enc.completion_cut
    assert enc.input_ids == full.input_ids[-40:]  # the prompt's tail, the whole completion
    assert sum(label != IGNORE for label in enc.labels) == n_completion


def test_a_completion_longer_than_max_length_keeps_its_head(tokenizer):
    ex = Example("Say a lot.", "many words " * 100)
    enc = encode(ex, tokenizer, max_length=32)
    completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
    assert enc.completion_cut and enc.input_ids == completion[:32] and enc.labels == completion[:32]


def test_batches_are_padded_to_their_longest_example(tokenizer):
    feats = [encode(Example("hi " * n, "ok"), tokenizer, 512).features() for n in (1, 5, 20)]
    lengths = [len(f["input_ids"]) for f in feats]
    batch = collator(tokenizer)(feats)
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for row, n in enumerate(lengths):  # padding never carries loss
        assert (batch["labels"][row, n:] == IGNORE).all()
    assert collator(tokenizer, pad_to=128)(feats)["input_ids"].shape == (3, 128)


def test_packed_batches_have_no_padding_and_restart_positions(tokenizer):
    feats = [encode(Example("hi " * n, "ok"), tokenizer, 512).features() for n in (1, 5, 20)]
    lengths = [len(f["input_ids"]) for f in feats]
    batch = collator(tokenizer, packing=True)(feats)
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    assert batch["position_ids"][0].tolist() == [i for n in lengths for i in range(n)]
    starts = [sum(lengths[:k]) for k in range(len(lengths))]
    assert all(batch["labels"][0, s] == IGNORE for s in starts)  # no example predicts the next


def test_packed_loss_equals_padded_loss(tiny_model_dir, tokenizer):
    """Same examples, same model: one packed row gives the padded batch's loss (the mask built
    from the position ids keeps each example to itself), and the loss really depends on that."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model.config.use_cache = False  # as the Trainer sets it: with a cache the packed mask is off
    feats = [encode(ex, tokenizer, 64).features() for ex in examples(5, "a longer answer here")]
    with torch.no_grad():
        padded = model(**collator(tokenizer)(feats)).loss.item()
        packed_batch = collator(tokenizer, packing=True)(feats)
        packed = model(**packed_batch).loss.item()
        leaky = model(input_ids=packed_batch["input_ids"], labels=packed_batch["labels"]).loss.item()
    assert packed == pytest.approx(padded, rel=1e-5)
    assert abs(leaky - padded) > 1e-3  # attention across examples would show


def test_packed_training_logs_the_padded_losses(tiny_model_dir, tmp_path):
    """The trainer's losses step by step, packed vs padded (no dropout: same computation)."""
    config = TrainConfig(epochs=1, lora_dropout=0.0, **FAST)
    runs = {}
    for packing in (True, False):
        out = tmp_path / f"packing-{packing}"
        train_lora(str(tiny_model_dir), examples(12), [], out, config.changed(packing=packing),
                   say=lambda m: None)
        runs[packing] = [r["loss"] for r in log_records(out) if "loss" in r]
    assert len(runs[True]) == 3
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)


# --------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """Train on "yes" answers, validate on unrelated ones: the validation loss rises after
    epoch 1, so the kept adapter must be epoch 1's, not the last one."""
    out = tmp_path_factory.mktemp("trained") / "adapter"
    result = train_lora(str(tiny_model_dir), examples(16), VALID, out,
                        TrainConfig(epochs=3, **{**FAST, "lr": 5e-2}))
    return result, out


def _valid_loss(tiny_model_dir, adapter, tokenizer) -> float:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    batch = collator(tokenizer)([encode(e, tokenizer, 48).features() for e in VALID])
    with torch.no_grad():
        return model(**batch).loss.item()


@pytest.mark.slow
def test_best_epoch_is_the_lowest_validation_loss(trained, tiny_model_dir, tokenizer):
    result, out = trained
    valid = [r["valid_loss"] for r in log_records(out) if "valid_loss" in r]
    assert len(valid) == 3
    assert result.best_epoch == 1 + valid.index(min(valid)) == 1  # not the last epoch
    assert result.best_valid_loss == pytest.approx(min(valid))
    # the adapter written out is that epoch's: its validation loss is the best one, not the last
    assert _valid_loss(tiny_model_dir, out, tokenizer) == pytest.approx(min(valid), abs=1e-5)
    assert min(valid) < valid[-1]


@pytest.mark.slow
def test_adapter_loads_with_peft_and_changes_logits(trained, tiny_model_dir, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, out = trained
    ids = torch.tensor([encode(examples(1)[0], tokenizer, 48).input_ids])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        before = base(ids).logits
        after = PeftModel.from_pretrained(base, str(out)).eval()(ids).logits
    assert not torch.allclose(before, after)


@pytest.mark.slow
def test_log_and_manifest(trained, tiny_model_dir):
    result, out = trained
    steps = [r for r in log_records(out) if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 13))  # 16 examples / 4 x 3 epochs
    assert all(r["lr"] > 0 and r["tokens_per_s"] > 0 for r in steps)
    assert steps[-1]["lr"] < steps[0]["lr"]  # linear decay
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == str(tiny_model_dir) and manifest["seed"] == 42
    assert manifest["data"]["train"]["n"] == 16 and len(manifest["data"]["train"]["sha256"]) == 64
    assert manifest["config"]["lora_r"] == 8 and manifest["config"]["target_modules"] == ["q_proj", "v_proj"]
    assert {"torch", "transformers", "peft"} <= set(manifest["versions"])
    assert result.n_shortened == manifest["n_shortened"] > 0  # the prompts repeated 3x are long
    assert any("lost tokens from the left" in n for n in manifest["notes"])
    assert not (out / "_work").exists()


@pytest.mark.slow
def test_rerun_with_same_inputs_is_a_no_op_and_other_inputs_are_refused(trained, tiny_model_dir):
    result, out = trained
    before = (out / "adapter_model.safetensors").stat().st_mtime_ns
    again = train_lora(str(tiny_model_dir), examples(16), VALID, out,
                       TrainConfig(epochs=3, **{**FAST, "lr": 5e-2}))
    assert again == result and (out / "adapter_model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(InputError, match="other inputs"):
        train_lora(str(tiny_model_dir), examples(8), [], out, TrainConfig(epochs=3, **FAST))


@pytest.mark.slow
def test_no_validation_keeps_the_last_epoch_and_init_adapter_continues(trained, tiny_model_dir,
                                                                       tmp_path):
    _, first = trained
    result = train_lora(str(tiny_model_dir), examples(8), [], tmp_path / "cont",
                        TrainConfig(epochs=1, **FAST), init_adapter=str(first))
    assert result.best_epoch is None and result.selection.startswith("last epoch")
    assert "no validation examples: keeping the last epoch" in result.notes
    start, end = adapter_weights(first), adapter_weights(tmp_path / "cont")
    assert start.keys() == end.keys()
    assert any(not torch.equal(start[k], end[k]) for k in start)


def test_bad_configuration_is_an_input_error(tiny_model_dir, tmp_path):
    with pytest.raises(InputError, match="epochs 0"):
        train_lora(str(tiny_model_dir), examples(4), [], tmp_path / "x", TrainConfig(epochs=0))
    with pytest.raises(InputError, match="no training examples"):
        train_lora(str(tiny_model_dir), [], [], tmp_path / "x", TrainConfig())
    with pytest.raises(InputError, match="target_modules"):
        train_lora(str(tiny_model_dir), examples(4), [], tmp_path / "x",
                   TrainConfig(target_modules=("no_such_proj",), progress=False))
    assert not (tmp_path / "x" / "manifest.json").exists()


# --------------------------------------------------------------------------- resume

RUNNER = textwrap.dedent("""
    import os, signal, sys
    from transformers import TrainerCallback
    from valueharms.align.trainer import TrainConfig, train_lora
    from valueharms.records import Example

    class KillAt(TrainerCallback):  # SIGKILL: no clean-up, exactly like kill -9
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)

    train = [Example(f"Is {i} a number? " * (1 + i % 3), "yes yes yes") for i in range(24)]
    valid = [Example(f"Is {i} even?", "no no no") for i in range(4)]
    config = TrainConfig(epochs=3, lr=1e-2, batch_size=4, max_length=48, save_steps=4,
                         progress=False)
    train_lora(sys.argv[1], train, valid, sys.argv[2], config,
               callbacks=[KillAt()] if int(sys.argv[3]) else [])
""")


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_adapter(tiny_model_dir, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUNNER)

    def run(out, kill_at):
        return subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(out),
                               str(kill_at)], capture_output=True, text=True, timeout=300)

    assert run(tmp_path / "whole", 0).returncode == 0
    steps = lambda d: [(r["step"], r.get("loss"), r.get("valid_loss"))  # noqa: E731
                       for r in log_records(d) if "loss" in r or "valid_loss" in r]
    # 18 steps (3 epochs x 6), a checkpoint every 4: kill at seeded points between checkpoints.
    for seed in (1, 2):
        kill_at = random.Random(seed).choice([5, 6, 7, 9, 10, 11, 13, 14, 15])
        out = tmp_path / f"resumed{seed}"
        killed = run(out, kill_at)
        assert killed.returncode == -9
        assert not (out / "manifest.json").exists()
        assert last_checkpoint(out / "_work" / "checkpoints").name == \
            f"checkpoint-{kill_at // 4 * 4}"
        finished = run(out, 0)
        assert finished.returncode == 0, finished.stderr
        assert "resuming from" in finished.stderr
        whole, resumed = adapter_weights(tmp_path / "whole"), adapter_weights(out)
        for key in whole:
            torch.testing.assert_close(resumed[key], whole[key])
        assert steps(out) == steps(tmp_path / "whole")  # no duplicate, none missing


# --------------------------------------------------------------------------- CLI: train vim

@pytest.mark.needs_data('countries', 'ess-distribution')
def test_cli_train_vim_bad_input_exits_2(cli, tmp_path, capsys):
    from valueharms.cli import main

    out = tmp_path / "vim"
    for args, message in [(["--target", "Nobody"], "Nobody"),
                          (["--target", "Hed", "--threshold", "9"], "--threshold 9"),
                          (["--target", "Hed", "--lr", "-1"], "--lr -1"),
                          (["--target", "Hed", "--limit", "0"], "--limit 0")]:
        assert main(["train", "vim", "--out", str(out), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
    result = cli("train", "vim", "--out", str(out), "--target", "Hed", "--strategy", "median")
    assert result.returncode == 2 and "median" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
@pytest.mark.needs_data()
@pytest.mark.parametrize("target", ["Hed", "close_Ach"])
def test_cli_train_vim_two_stages(cli, tiny_model_dir, tmp_path, target):
    from peft import PeftConfig

    out = tmp_path / "vim"
    result = cli("train", "vim", "--model", str(tiny_model_dir), "--target", target, "--limit", "10",
                 "--epochs", "1", "--max-length", "96", "--out", str(out))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    stage1 = json.loads((out / "stage1" / "manifest.json").read_text())
    stage2 = json.loads((out / "stage2" / "manifest.json").read_text())
    assert manifest["target"] == target and set(manifest["stages"]) == {"stage1", "stage2"}
    assert stage2["init_adapter"] == str(out / "stage1")  # stage 2 continues stage 1
    for stage in ("stage1", "stage2"):
        assert PeftConfig.from_pretrained(str(out / stage)).r == 8
    if target == "close_Ach":  # one of the five targets without positive arguments
        assert manifest["negatives_only"] is True
        assert "no positive arguments" in result.stderr
        assert any("negative arguments only" in note for note in stage1["notes"])
    else:
        assert manifest["negatives_only"] is False
