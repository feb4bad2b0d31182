"""Shared fixtures: the real data beside the project, the CLI as a subprocess, tiny models."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VALUEHARMS_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert (DATA / "valueEval_10.csv").is_file(), f"shared data not found at {DATA}"
    return DATA


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``valueharms`` exactly as a user would: a subprocess of the installed entry point."""
    full_env = {**os.environ, "VALUEHARMS_DATA": str(DATA), **(env or {})}
    exe = Path(sys.executable).with_name("valueharms")
    return subprocess.run([str(exe), *args], cwd=cwd or ROOT, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with the embedded model's tokenizer and chat template (~0.3 s/batch)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from valueharms import models

    tokenizer = models.load_tokenizer(None)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
