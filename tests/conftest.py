"""Shared fixtures: the data beside the project (skipped when missing), a session-wide temporary
cache, the CLI as a subprocess, tiny models."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from valueharms import models, sources

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VALUEHARMS_DATA", ROOT.parent / "shared" / "data"))
# Data sets a test may ask for without naming them: those the shared data folder holds (the
# fine-tuning sets Alpaca, Dolly and SAMSum are never there).
# The benign sets a user supplies are not in the shared data folder.
CORE_DATA = tuple(k for k in sources.DATASETS
                  if k not in ("alpaca", "dolly", "dolly-no-safety", "samsum"))
_USER_CACHE = Path(os.environ.get("VALUEHARMS_CACHE", Path.home() / ".cache" / "valueharms"))


def pytest_configure(config: pytest.Config) -> None:
    """Every test, and every CLI subprocess it starts, uses a temporary cache and DATA.

    The converted embedded model is the one thing worth keeping between sessions (about 30 s
    to build): the temporary cache links to the user's converted copy when there is one (read
    only), else to a folder under .pytest_cache where the first session builds it.
    """
    cache = Path(tempfile.mkdtemp(prefix="valueharms-test-cache-"))
    config._valueharms_cache = cache  # type: ignore[attr-defined]
    converted = _USER_CACHE / "models" / models.DEFAULT_MODEL
    if (converted / "config.json").is_file():
        (cache / "models").mkdir()
        (cache / "models" / models.DEFAULT_MODEL).symlink_to(converted)
    elif config.cache is not None:
        (cache / "models").symlink_to(config.cache.mkdir("valueharms-models"))
    os.environ["VALUEHARMS_CACHE"] = str(cache)
    os.environ["VALUEHARMS_DATA"] = str(DATA)
    # Libraries that keep a config folder in the home folder otherwise (the report's figures,
    # Keras 3 of offline-toxicity).
    os.environ["MPLCONFIGDIR"] = str(cache / "matplotlib")
    os.environ["KERAS_HOME"] = str(cache / "keras")
    os.environ.pop("VALUEHARMS_MIRROR", None)  # a developer's mirror must not feed the tests
    # Ray: tests start their own instances, never join a developer's cluster. Its token
    # authentication (on by default for a new instance) would read, or create,
    # ~/.ray/auth_token; a token in the environment keeps it out of the home folder. The mode
    # is set too: clients such as `ray status` only send a token in token mode.
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = getattr(config, "_valueharms_cache", None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


def need_data(*keys: str) -> Path:
    """DATA, or skip the calling test naming the command that fetches the first missing set.

    No keys: every data set the shared data folder holds.
    """
    for key in keys or CORE_DATA:
        ds = sources.DATASETS[key]
        if not (DATA / ds.filename).is_file():
            pytest.skip(f"needs data file {ds.filename} in {DATA}: run "
                        f"`valueharms data fetch {key}`")
    return DATA


@pytest.fixture(autouse=True)
def _needs_data_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("needs_data")
    if marker is not None:
        need_data(*marker.args)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """DATA holding every data set of the shared folder, else a skip (a test that needs only
    some says so with ``@pytest.mark.needs_data(KEY, ...)`` instead)."""
    return need_data()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``valueharms`` exactly as a user would: a subprocess of the installed entry point."""
    full_env = {**os.environ, "VALUEHARMS_DATA": str(DATA), **(env or {})}
    return subprocess.run([str(cli_exe()), *args], cwd=cwd or ROOT, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def cli_exe() -> Path:
    return Path(sys.executable).with_name("valueharms")


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def build_tiny_model(out: Path) -> Path:
    """A 2-layer random Llama with the embedded model's tokenizer and chat template (~0.3 s/batch)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = models.load_tokenizer(None)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
