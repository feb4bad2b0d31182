"""Turning a user message into the text a model sees: its chat template, or a plain base form.

Every prompt in the toolkit (training examples, benchmark questions, survey items) passes
through :func:`render_prompt`, so training and generation always agree on the format.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .config import PROMPT_FORMS

FORMS = PROMPT_FORMS  # the old name


def template(name: str, override_dir: str | Path | None = None) -> str:
    """Text of template ``name`` (e.g. ``"vim/stage1.txt"``), from ``override_dir`` if given.

    Users replace any template by pointing ``--templates DIR`` (or ``$VALUEHARMS_TEMPLATES``)
    at a folder with files of the same names.
    """
    import os

    for base in (override_dir, os.environ.get("VALUEHARMS_TEMPLATES")):
        if base and (Path(base) / name).is_file():
            return (Path(base) / name).read_text(encoding="utf-8")
    return resources.files("valueharms").joinpath("templates", name).read_text(encoding="utf-8")


def uses_chat(tokenizer, form: str = "auto") -> bool:
    """Whether prompts go through the tokenizer's chat template for ``form``."""
    if form not in FORMS:
        from .errors import InputError

        raise InputError(f"--prompt-form {form!r}: expected one of {', '.join(FORMS)}")
    return form == "chat" or (form == "auto" and getattr(tokenizer, "chat_template", None) is not None)


def render_prompt(user_text: str, tokenizer, form: str = "auto", system: str | None = None) -> str:
    """The full prompt string ending where the model's answer begins."""
    if uses_chat(tokenizer, form):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_text}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    base = template("base_form.txt")
    return base.format(system=(system + "\n\n") if system else "", user=user_text)


def prompt_token_ids(text: str, tokenizer) -> list[int]:
    """The token ids that reach the model for a rendered prompt, exactly as training builds them.

    The tokenizer's special tokens (BOS) are added unless the text already starts with BOS
    (a chat template that writes it): never missing in base form, never doubled.
    """
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]


def encode_prompts(texts, tokenizer, device=None):
    """A left-padded batch (``input_ids``, ``attention_mask``) of :func:`prompt_token_ids`."""
    return pad_token_ids([prompt_token_ids(t, tokenizer) for t in texts], tokenizer, device)


def pad_token_ids(ids, tokenizer, device=None):
    """Lists of token ids as one batch padded on the tokenizer's padding side."""
    batch = tokenizer.pad([{"input_ids": x} for x in ids], padding=True, return_tensors="pt")
    return batch.to(device) if device is not None else batch
