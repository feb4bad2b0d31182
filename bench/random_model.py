"""A random-weight Llama of a published shape, for measuring speed and memory where no weights are.

Throughput and memory depend on a model's shape, not on its weights, so a GPU machine with
no network (and no weights) can still measure what a 7B run costs. `build` makes the model
in memory on a device; the command line saves it with a tokenizer folder you supply (for
example the embedded model's), so every loader of the toolkit can take it as a local path.
The texts such a model writes are noise: use it for timings and memory, never for results.

    python bench/random_model.py --shape llama-1b --tokenizer DIR --out DIR [--device cuda]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from valueharms import models

# Shapes from the models' published config.json files (vocabulary: the model's own, unless a
# tokenizer is given, whose size then wins).
SHAPES: dict[str, dict] = {
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096),
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                      max_position_embeddings=8192, rope_theta=500000.0),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                     max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=32000),
}


def config(shape: str, vocab_size: int | None = None) -> LlamaConfig:
    """The LlamaConfig of ``shape`` (a key of SHAPES), with another vocabulary size if given."""
    fields = dict(SHAPES[shape])
    if vocab_size:
        fields["vocab_size"] = vocab_size
    return LlamaConfig(**fields)


def build(shape: str, device: str, dtype: torch.dtype, vocab_size: int | None = None):
    """A random-weight model of ``shape``, made directly on ``device`` in ``dtype``."""
    with torch.device(device):
        lm = AutoModelForCausalLM.from_config(config(shape, vocab_size), dtype=dtype)
    return lm.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--tokenizer", required=True, help="a folder with tokenizer files")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default=models.default_device())
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    lm = build(args.shape, args.device, getattr(torch, args.dtype), vocab_size=len(tokenizer))
    lm.config.bos_token_id, lm.config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    lm.config.pad_token_id = tokenizer.pad_token_id
    lm.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    template = Path(args.tokenizer) / "chat_template.jinja"
    if template.is_file():  # a template kept beside the tokenizer files travels with it
        shutil.copy(template, Path(args.out) / template.name)
    params = sum(p.numel() for p in lm.parameters())
    print(f"{args.shape}: {params / 1e9:.2f} B parameters, random weights, {args.dtype} -> {args.out}")


if __name__ == "__main__":
    main()
