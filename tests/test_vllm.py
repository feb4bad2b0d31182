"""The vLLM backend for real: the embedded model with two LoRA adapters made here, on vLLM's
CPU build (``make test-vllm`` builds its own environment, .venv-vllm). Skipped where vLLM is
not importable."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("vllm")
# Engine start-up alone takes minutes on two busy CPU cores.
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(2400)]

from valueharms import models  # noqa: E402
from valueharms.errors import InputError  # noqa: E402
from valueharms.generate import GenRequest, make_backend  # noqa: E402
from valueharms.records import Decoding  # noqa: E402

PROMPTS = ["The capital of France is", "My favourite way to spend a Sunday is",
           "Water boils at a temperature of", "The best advice I ever got was"]
GREEDY = Decoding(temperature=0.0, top_p=1.0, max_new_tokens=12)
ARGS = {"dtype": "float32", "max_model_len": 512, "max_loras": 2, "max_lora_rank": 8}


def make_adapter(base_dir, out, seed: int) -> str:
    """A LoRA with random (not zero) B matrices, so that it visibly changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.mul_(0.5)  # big enough to change the greedy path, not to garble it
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    base = models.embedded_model_dir()
    root = tmp_path_factory.mktemp("loras")
    return [make_adapter(base, root / "a", 1), make_adapter(base, root / "b", 2)]


def requests(adapter: str | None) -> list[GenRequest]:
    return [GenRequest(p, GREEDY, seed=i, adapter=adapter) for i, p in enumerate(PROMPTS)]


def test_vllm_greedy_matches_hf_per_adapter_and_mixed_batches_keep_order(adapters):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on the CPU build
    hf = make_backend("hf", None, device="cpu", model_args={"dtype": "float32"}, batch_size=4)
    expected = {a: [r.text for r in hf.generate(requests(a))] for a in (None, *adapters)}
    del hf
    vllm = make_backend("vllm", None, model_args=ARGS)
    vllm.load_adapters(adapters)
    got = {a: [r.text for r in vllm.generate(requests(a))] for a in (None, *adapters)}
    for adapter in (None, *adapters):
        for want, have in zip(expected[adapter], got[adapter]):
            # Kernels differ (vLLM's CPU attention vs eager PyTorch): the same text, or at least
            # the same first words before float noise flips a near-tie.
            assert have == want or have.split()[:2] == want.split()[:2], (adapter, want, have)
    for adapter in adapters:
        assert got[adapter] != got[None], "an adapter must change the output"
    assert got[adapters[0]] != got[adapters[1]]

    # One call with base and adapter rows interleaved: results come back in request order.
    order = [None, adapters[0], adapters[1], None, adapters[1], adapters[0]]
    mixed = [GenRequest(PROMPTS[i % len(PROMPTS)], GREEDY, seed=i, adapter=a)
             for i, a in enumerate(order)]
    results = vllm.generate(mixed)
    # A row's greedy text can change with the batch around it (base rows beside LoRA rows take
    # another kernel path), so rows are matched by their first words, which differ by prompt.
    assert [r.text.split()[:2] for r in results] == \
        [got[a][i % len(PROMPTS)].split()[:2] for i, a in enumerate(order)]
    assert vllm.provenance["backend"] == "vllm" and vllm.provenance["dtype"] == "float32"


def test_quantization_is_checked_against_the_installed_vllm():
    """vLLM's method names change between releases: the installed vLLM's list decides."""
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    assert models.loading_kwargs("vllm", {"quantization": "fp8"}) == {"quantization": "fp8"}
    assert "fp8" in QUANTIZATION_METHODS
    with pytest.raises(InputError, match="not a quantization method of the installed vLLM"):
        models.check_model_args("vllm", {"quantization": "fp9"})
