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

    python bench/bench_roofline.py [--model M | --shape llama2-7b] [--device cpu|cuda] [--memory]

With ``--shape`` the model is a random-weight Llama of a published shape (bench/random_model.py):
speed and memory depend on the shape only, so a GPU with no weights at hand can still measure a
7B model. ``--memory`` checks docs/models.md's memory table (peak GPU memory while training).
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
    n = 8192 if device.startswith("cuda") else 1536
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


def with_lora(lm):
    """``lm`` with the toolkit's default adapters (the paper's: r 8 on q/v) in training mode."""
    from peft import LoraConfig, get_peft_model

    from valueharms.config import TrainConfig

    c = TrainConfig()  # the toolkit's defaults, the paper's adapter
    lm.train()
    lm.config.use_cache = False
    return get_peft_model(lm, LoraConfig(r=c.lora_r, lora_alpha=c.lora_alpha,
                                         lora_dropout=c.lora_dropout,
                                         target_modules=list(c.target_modules)))


def train_rate(peft_model, device: str, batch: int, tokens: int, checkpointing: bool = False,
               steps: int = 3) -> tuple[float, float | None]:
    """(tokens/s, peak GPU memory in GB or None on CPU) of forward + backward + AdamW steps."""
    if checkpointing:
        peft_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        peft_model.gradient_checkpointing_disable()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(100, 1000, (batch, tokens), device=device)

    def step():
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rate = batch * tokens / best_time(step, device, repeats=steps)
    peak_gb = torch.cuda.max_memory_allocated() / 1e9 if on_gpu else None
    return rate, peak_gb


def load(args):
    """The measured model: a random-weight one of ``--shape``, or ``--model`` (default: the
    embedded one); and its name for the printout."""
    if args.shape:
        from random_model import build

        dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
        return build(args.shape, args.device, getattr(torch, args.dtype) if args.dtype else dtype), \
            f"{args.shape} (random weights)"
    lm, _ = models.load_model(args.model, args.device)
    return lm, args.model or "embedded SmolLM2-135M-Instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--shape", default=None,
                        help="instead of --model: a random-weight Llama of this shape "
                             "(bench/random_model.py: llama2-7b, llama3-8b, llama-1b, tiny)")
    parser.add_argument("--dtype", default=None, help="with --shape (default: bf16 on CUDA, "
                                                      "fp32 on CPU)")
    parser.add_argument("--device", default=models.default_device())
    parser.add_argument("--batch", type=int, default=8, help="prefill and training rows")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--decode-batches", default=",".join(map(str, DECODE_BATCHES)))
    parser.add_argument("--memory", action="store_true",
                        help="also train at docs/models.md's two settings (VIM 8 x 512, benign "
                             "1 x 2048), with and without gradient checkpointing: tokens/s and "
                             "peak GPU memory")
    args = parser.parse_args()

    lm, name = load(args)
    dtype, config = next(lm.parameters()).dtype, lm.config
    peak = measure_peak(args.device, dtype)
    n = matmul_params(lm)
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.parameters())
    where = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
             else f"{torch.get_num_threads()} threads")
    print(f"device {args.device} ({where}), {dtype}; machine shared with other jobs unless "
          f"said otherwise")
    print(f"peak: matmul {peak.flops / 1e9:.1f} GFLOP/s, memory {peak.bandwidth / 1e9:.1f} GB/s "
          f"(copy)")
    print(f"model {name}: {n / 1e6:.1f} M matmul parameters, {weight_bytes / 1e6:.0f} MB of weights")

    shares: dict[str, float] = {}
    rate = prefill(lm, args.device, args.batch, args.prompt_tokens)
    per_token = 2 * n + attention_flops(config, args.prompt_tokens / 2)
    shares["prefill"] = rate * per_token / peak.flops
    print(f"prefill {args.batch}x{args.prompt_tokens}: {rate:9.1f} tokens/s; FLOP bound "
          f"{peak.flops / per_token:9.1f} tokens/s")
    for batch in map(int, args.decode_batches.split(",")):
        rate = decode(lm, args.device, batch, args.new_tokens)
        step_bytes = weight_bytes / peak.bandwidth
        step_flops = batch * (2 * n + attention_flops(config, 16 + args.new_tokens / 2)) / peak.flops
        bound, kind = max((step_bytes, "bytes"), (step_flops, "FLOPs"))
        shares[f"decode_b{batch}"] = rate * bound / batch
        print(f"decode batch {batch:2d}: {rate:9.1f} tokens/s; {kind} bound "
              f"{batch / bound:9.1f} tokens/s")
    peft_model = with_lora(lm)
    settings = [(args.batch, args.prompt_tokens, False)]
    if args.memory:
        settings = [(8, 512, False), (8, 512, True), (1, 2048, False), (1, 2048, True)]
    for batch, tokens, checkpointing in settings:
        rate, peak_gb = train_rate(peft_model, args.device, batch, tokens, checkpointing)
        per_token = 4 * n + 3 * attention_flops(config, tokens / 2)
        if checkpointing:
            per_token += 2 * n + attention_flops(config, tokens / 2)  # the forward, again
        label = f"{batch}x{tokens}" + (" checkpointing" if checkpointing else "")
        shares.setdefault("lora_train", rate * per_token / peak.flops)
        memory = f"; peak memory {peak_gb:.1f} GB" if peak_gb is not None else ""
        print(f"LoRA training {label}: {rate:9.1f} tokens/s ({rate * per_token / peak.flops:.3f} "
              f"of the FLOP bound){memory}")
    for stage, share in shares.items():
        print(f"ratio {stage}_of_peak {share:.3f}")


if __name__ == "__main__":
    main()
