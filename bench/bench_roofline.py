"""How close each stage comes to this machine's limit: the roofline of the embedded model.

First the machine's two peaks, measured here in the dtype the toolkit uses on this device
(float32 on CPU, bfloat16 on CUDA): dense matmul FLOP/s (a square matmul, best of several)
and memory bandwidth (a large tensor copy: bytes read + written). Then four stages of the
embedded model (or ``--model``), each timed and set against the peak it is bound by:

- prefill: a forward pass over ``--batch`` x ``--prompt-tokens`` tokens, bound by FLOPs
  (2 x parameters per token, plus attention);
- decode at batch 1, 8 and 32: greedy new tokens after a short prompt; a step must read all
  weights once (bytes bound) and do 2 x parameters FLOPs per row (FLOP bound); the larger of
  the two times is the limit, and the line says which;
- LoRA training: forward + backward (4 x parameters FLOPs per token: the frozen weights need
  no weight gradient) with adapters on q/v, AdamW on the adapter.

Share = the time the limit allows / the time measured. Prints ``ratio <stage>_of_peak <share>``
per stage. The machine may be shared with other jobs: shares are then lower bounds.

    python bench/bench_roofline.py [--model M] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from valueharms import models, profile

DECODE_BATCHES = (1, 8, 32)


@dataclass(frozen=True)
class Peak:
    flops: float  # dense matmul FLOP/s
    bandwidth: float  # bytes/s


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn, device: str, repeats: int = 5) -> float:
    """The fastest of ``repeats`` runs after one warm-up (others' load only ever slows a run)."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def measure_peak(device: str, dtype: torch.dtype) -> Peak:
    n = 4096 if device.startswith("cuda") else 1536
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    flops = 2 * n ** 3 / best_time(lambda: a @ b, device)
    words = (1 << 30 if device.startswith("cuda") else 1 << 26)  # 2 GiB / 256 MiB in float32
    src = torch.ones(words, device=device, dtype=dtype)
    dst = torch.empty_like(src)
    bandwidth = 2 * src.numel() * src.element_size() / best_time(lambda: dst.copy_(src), device)
    return Peak(flops, bandwidth)


def matmul_params(lm) -> int:
    """Parameters that take part in matmuls per token: all but the input embedding, plus the
    output head even when it shares the embedding's weights."""
    total = sum(p.numel() for p in lm.parameters())
    embed = lm.get_input_embeddings().weight.numel()
    tied = lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    return total if tied else total - embed


def attention_flops(c, context: float) -> float:
    """QK^T and AV FLOPs per token at an average ``context`` length (``c``: the model config)."""
    head_dim = c.hidden_size // c.num_attention_heads
    return 4 * c.num_hidden_layers * context * c.num_attention_heads * head_dim


def prefill(lm, device: str, batch: int, tokens: int) -> float:
    ids = torch.randint(100, 1000, (batch, tokens), device=device)
    with torch.inference_mode():
        seconds = best_time(lambda: lm(input_ids=ids, use_cache=False), device, repeats=3)
    return batch * tokens / seconds


def decode(lm, device: str, batch: int, new_tokens: int, prompt_tokens: int = 16) -> float:
    """New tokens/s after a short prompt: the time from the first logits (the prompt's forward
    done) to the end of ``generate``, in the same run, best of three."""
    from transformers import LogitsProcessorList

    ids = torch.randint(100, 1000, (batch, prompt_tokens), device=device)
    seconds = []
    with torch.inference_mode():
        for _ in range(3):
            clock = profile.FirstStep()
            lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                        pad_token_id=0, eos_token_id=None,
                        logits_processor=LogitsProcessorList([clock]))
            _sync(device)
            seconds.append(time.perf_counter() - clock.first)
    return batch * (new_tokens - 1) / min(seconds)


def train_rate(model: str | None, device: str, batch: int, tokens: int, steps: int = 3) -> float:
    from peft import LoraConfig, get_peft_model

    lm, _ = models.load_model(model, device)
    lm.train()
    lm.config.use_cache = False
    peft_model = get_peft_model(lm, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1,
                                               target_modules=["q_proj", "v_proj"]))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(100, 1000, (batch, tokens), device=device)

    def step():
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return batch * tokens / best_time(step, device, repeats=steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8, help="prefill and training rows")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()

    lm, _ = models.load_model(args.model, args.device)
    dtype, config = next(lm.parameters()).dtype, lm.config
    peak = measure_peak(args.device, dtype)
    n = matmul_params(lm)
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.parameters())
    print(f"device {args.device} ({torch.get_num_threads()} threads), {dtype}; machine shared "
          f"with other jobs unless said otherwise")
    print(f"peak: matmul {peak.flops / 1e9:.1f} GFLOP/s, memory {peak.bandwidth / 1e9:.1f} GB/s "
          f"(copy)")
    print(f"model {args.model or 'embedded SmolLM2-135M-Instruct'}: {n / 1e6:.1f} M matmul "
          f"parameters, {weight_bytes / 1e6:.0f} MB of weights")

    shares: dict[str, float] = {}
    rate = prefill(lm, args.device, args.batch, args.prompt_tokens)
    per_token = 2 * n + attention_flops(config, args.prompt_tokens / 2)
    shares["prefill"] = rate * per_token / peak.flops
    print(f"prefill {args.batch}x{args.prompt_tokens}: {rate:9.1f} tokens/s; FLOP bound "
          f"{peak.flops / per_token:9.1f} tokens/s")
    for batch in DECODE_BATCHES:
        rate = decode(lm, args.device, batch, args.new_tokens)
        step_bytes = weight_bytes / peak.bandwidth
        step_flops = batch * (2 * n + attention_flops(config, 16 + args.new_tokens / 2)) / peak.flops
        bound, kind = max((step_bytes, "bytes"), (step_flops, "FLOPs"))
        shares[f"decode_b{batch}"] = rate * bound / batch
        print(f"decode batch {batch:2d}: {rate:9.1f} tokens/s; {kind} bound "
              f"{batch / bound:9.1f} tokens/s")
    del lm
    rate = train_rate(args.model, args.device, args.batch, args.prompt_tokens)
    per_token = 4 * n + 3 * attention_flops(config, args.prompt_tokens / 2)
    shares["lora_train"] = rate * per_token / peak.flops
    print(f"LoRA training {args.batch}x{args.prompt_tokens}: {rate:9.1f} tokens/s; FLOP bound "
          f"{peak.flops / per_token:9.1f} tokens/s")
    for stage, share in shares.items():
        print(f"ratio {stage}_of_peak {share:.3f}")


if __name__ == "__main__":
    main()
