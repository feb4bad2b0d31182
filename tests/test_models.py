"""Model options (``--model-arg``, ``MODEL@REVISION``) and memory-lean training settings."""
from __future__ import annotations

import json

import pytest
import torch

from valueharms import models
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


def test_cli_lora_settings_land_in_adapter_config(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "vim"
    result = cli("train", "vim", "--model", str(tiny_model_dir), "--target", "Hed", "--limit", "4",
                 "--epochs", "1", "--max-length", "64", "--out", str(out), "--lora-r", "4",
                 "--lora-alpha", "16", "--lora-dropout", "0.05", "--target-modules",
                 "q_proj,k_proj,v_proj", "--gradient-checkpointing", "--model-arg",
                 "dtype=float32")
    assert result.returncode == 0, result.stderr
    for stage in ("stage1", "stage2"):
        config = json.loads((out / stage / "adapter_config.json").read_text())
        assert config["r"] == 4 and config["lora_alpha"] == 16
        assert config["lora_dropout"] == pytest.approx(0.05)
        assert sorted(config["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
