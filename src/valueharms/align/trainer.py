"""One LoRA trainer for every fine-tune (VIM stages and benign baselines).

Built on the transformers ``Trainer`` and PEFT. What it adds on top:

- examples are rendered with :func:`valueharms.chat.render_prompt`, prompt and completion are
  tokenised separately and the loss falls on the completion (+ EOS) only;
- an over-long example loses *prompt* tokens from the left, never its completion;
- batches are padded to their own longest example (dynamic padding), or with ``packing``
  padding-free: a batch's examples are concatenated into one row whose position ids restart
  at 0 for each example, and attention stays within each example (transformers builds that
  block-diagonal mask, or flash-attention's varlen boundaries, from the position ids);
- the epoch with the lowest validation loss is kept (a callback saves the best adapter);
- checkpoints every ``save_steps`` steps: a killed run continues where it stopped;
- a JSONL training log and a manifest (model, data hashes, config, versions, seed, times).

A run is four plain steps, :func:`prepare` (check the inputs; is it done already?),
:func:`load` (tokenise, load the base and its adapter), :func:`fit` (train) and :func:`finish`
(install the kept adapter, write the manifest); :func:`train_lora` runs them in order. The
stages that use it (VIM's two, benign fine-tunes) live beside their data:
:mod:`valueharms.align.vim` and :mod:`valueharms.align.benign`.

Layout of ``out_dir`` once finished: the PEFT adapter files (``PeftModel.from_pretrained(base,
out_dir)``), ``train_log.jsonl`` and ``manifest.json`` (written last: its presence means done).
While running, ``out_dir/_work/`` holds the checkpoints and the best adapter so far.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import console, provenance
from ..config import TrainConfig  # also imported from here
from ..errors import InputError
from ..files import JsonlAppender, atomic_dir, atomic_write_text, versions, write_jsonl
from ..records import Example

IGNORE = -100  # label value the loss skips
WORK, BEST, CHECKPOINTS = "_work", "best", "checkpoints"
LOG_NAME, MANIFEST_NAME = "train_log.jsonl", "manifest.json"


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: str
    best_epoch: int | None  # None when there was nothing to validate on
    best_valid_loss: float | None
    selection: str  # how the kept epoch was chosen
    n_train: int
    n_valid: int
    n_shortened: int  # examples whose prompt lost tokens from the left
    n_completion_cut: int  # examples whose completion alone exceeded max_length (head kept)
    first_loss: float | None
    last_loss: float | None
    log_path: str
    manifest_path: str
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- tokenising

@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    shortened: bool
    completion_cut: bool

    def features(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "attention_mask": [1] * len(self.input_ids),
                "labels": self.labels}


def encode(example: Example, tokenizer, max_length: int, form: str = "auto") -> Encoded:
    """Prompt + completion + EOS, labels on the completion only, shortened from the left."""
    from ..chat import prompt_token_ids, render_prompt

    prompt = prompt_token_ids(render_prompt(example.prompt, tokenizer, form), tokenizer)
    completion = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        completion = completion + [tokenizer.eos_token_id]
    completion_cut = len(completion) > max_length
    if completion_cut:  # nothing of the prompt fits: keep the completion's head
        prompt, completion = [], completion[:max_length]
    room = max_length - len(completion)
    shortened = len(prompt) > room
    if shortened:
        prompt = prompt[len(prompt) - room:]
    return Encoded(prompt + completion, [IGNORE] * len(prompt) + completion, shortened,
                   completion_cut)


def collator(tokenizer, pad_to: int | None = None, packing: bool = False):
    """Batches of encoded examples: packed (one row, no padding), or padded to the batch's
    longest example (or to ``pad_to``) with padded labels ignored.

    Packed: the first label of every example is ignored, so no example is trained to predict
    the next one's first token; its first token has no predecessor in a padded batch either,
    so both give the same loss. No attention mask is sent: its absence is what makes
    transformers read the example boundaries from the position ids.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if packing and not pad_to:
        return DataCollatorWithFlattening(separator_id=IGNORE)
    if pad_to:
        return DataCollatorForSeq2Seq(tokenizer, padding="max_length", max_length=pad_to,
                                      label_pad_token_id=IGNORE, return_tensors="pt")
    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE,
                                  return_tensors="pt")


def data_hash(examples: Sequence[Example]) -> str:
    """SHA-256 of the examples, in order (prompt, completion and meta)."""
    digest = hashlib.sha256()
    for ex in examples:
        line = json.dumps([ex.prompt, ex.completion, ex.meta], sort_keys=True, ensure_ascii=False)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


# --------------------------------------------------------------------------- callbacks

def _callbacks(log: JsonlAppender, best_dir: Path, progress: bool):
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """One JSONL line per Trainer log: step, epoch, loss, lr, tokens/s, valid loss."""

        def on_train_begin(self, args, state, control, **kw):
            self.clock, self.tokens = time.monotonic(), state.num_input_tokens_seen

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            record: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0, 4)}
            if "loss" in logs:
                now, seen = time.monotonic(), state.num_input_tokens_seen
                record.update(loss=logs["loss"], lr=logs.get("learning_rate"),
                              grad_norm=logs.get("grad_norm"),
                              tokens_per_s=round((seen - self.tokens) / max(now - self.clock, 1e-9), 1))
                self.clock, self.tokens = now, seen
            elif "eval_loss" in logs:
                record["valid_loss"] = logs["eval_loss"]
            elif "train_loss" in logs:
                record.update(train_loss=logs["train_loss"], runtime_s=logs.get("train_runtime"))
            else:
                return
            log.write(record)

    class KeepBest(TrainerCallback):
        """Save the adapter whenever the validation loss is the lowest so far (kept on disk,
        so a resumed run still knows its best epoch)."""

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
            loss = (metrics or {}).get("eval_loss")
            if loss is None or model is None:
                return
            best = _read_best(best_dir)
            if best is not None and not loss < best["valid_loss"]:
                return
            with atomic_dir(best_dir) as tmp:
                model.save_pretrained(tmp)
                (tmp / "best.json").write_text(json.dumps(
                    {"epoch": round(state.epoch), "step": state.global_step, "valid_loss": loss}))

    class Progress(TrainerCallback):
        """The optimizer steps as a bar on the terminal, and each log dict on stderr, which a
        study step sends to its log.txt (transformers' own bar would write both to stderr)."""

        def on_train_begin(self, args, state, control, **kw):
            self.bar = console.bar(state.max_steps, "train", unit="step",
                                   initial=state.global_step)

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kw):
            self.bar.write(str(logs), file=sys.stderr)

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    return [JsonlLog(), KeepBest(), *([Progress()] if progress else [])]


def _read_best(best_dir: Path) -> dict | None:
    path = best_dir / "best.json"
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------- resuming

def last_checkpoint(checkpoints: Path) -> Path | None:
    """The newest checkpoint that was completely written (its trainer_state.json is last)."""
    if not checkpoints.is_dir():
        return None
    found = []
    for d in checkpoints.glob("checkpoint-*"):
        try:
            json.loads((d / "trainer_state.json").read_text())
            found.append((int(d.name.split("-")[1]), d))
        except (OSError, ValueError):
            shutil.rmtree(d, ignore_errors=True)  # half-written by a killed run
    return max(found)[1] if found else None


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines newer than the checkpoint we resume from (they will be logged again)."""
    if path.exists():
        kept = [r for r in JsonlAppender(path).records()
                if r.get("event") or r.get("step", 0) <= step]
        write_jsonl(path, kept)


# --------------------------------------------------------------------------- training

def to_stderr(message: str) -> None:
    """The default ``say``: one line on stderr, flushed."""
    print(message, file=sys.stderr, flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _load_peft_model(model: str | None, config: TrainConfig, init_adapter: str | None,
                     model_args: dict[str, Any]):
    """The base (loaded as ``model_args`` say: dtype, 4/8-bit for QLoRA, revision ...) with a
    trainable LoRA adapter on top, new or continued from ``init_adapter``."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    from .. import models

    base = models.load_causal_lm(model, model_args)
    if "quantization" in model_args:  # QLoRA: norms in float32, inputs that carry gradients
        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=config.gradient_checkpointing)
    set_seed(config.seed)  # the LoRA A matrices are drawn here
    if init_adapter:
        if not (Path(init_adapter) / "adapter_config.json").is_file():
            raise InputError(f"{init_adapter}: not a PEFT adapter directory (no adapter_config.json)")
        return PeftModel.from_pretrained(base, init_adapter, is_trainable=True)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    try:
        return get_peft_model(base, lora)
    except ValueError as exc:
        raise InputError(f"target_modules {','.join(config.target_modules)}: "
                         f"{str(exc).splitlines()[0]}") from None


def _encode_all(examples: Sequence[Example], tokenizer, config: TrainConfig) -> list[Encoded]:
    return [encode(ex, tokenizer, config.max_length, config.prompt_form) for ex in examples]


def _training_args(config: TrainConfig, output_dir: Path, has_valid: bool, base_dtype):
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=config.epochs, learning_rate=config.lr,
        lr_scheduler_type=config.scheduler, warmup_steps=0, weight_decay=0.0,
        per_device_train_batch_size=config.batch_size,
        # no gradients in evaluation: batch up to 8 even when training uses accumulation
        per_device_eval_batch_size=min(config.batch_size * config.grad_accum,
                                       max(config.batch_size, 8)),
        gradient_accumulation_steps=config.grad_accum,
        eval_strategy="epoch" if has_valid else "no",
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=2,
        logging_strategy="steps", logging_steps=config.logging_steps,
        include_num_input_tokens_seen="non_padding",
        seed=config.seed, data_seed=config.seed, report_to="none",
        disable_tqdm=True,  # the Progress callback draws the bar (on the terminal in a study)
        remove_unused_columns=False, label_names=["labels"],
        # Autocast in bf16 only where the base is not float32 already by choice.
        bf16=(torch.cuda.is_available() and torch.cuda.is_bf16_supported()
              and base_dtype != torch.float32),
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works with frozen inputs
        dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available())


def _fingerprint(model: str, train: Sequence[Example], valid: Sequence[Example],
                 config: TrainConfig, init_adapter: str | None,
                 model_args: dict[str, Any]) -> dict[str, Any]:
    # Memory settings that leave the numbers as they are do not make another run.
    settings = config.model_dump(exclude={"progress", "gradient_checkpointing"})
    # JSON-normalised (tuples become lists) so that it compares equal to run.json
    return json.loads(json.dumps({
        "model": model, "init_adapter": init_adapter, "config": settings,
        **({"model_args": model_args} if model_args else {}),
        "data": {"train": {"n": len(train), "sha256": data_hash(train)},
                 "valid": {"n": len(valid), "sha256": data_hash(valid)}}}))


def _check_out_dir(out: Path, fingerprint: dict) -> dict | None:
    """The finished manifest if ``out`` already holds this exact run; InputError if another."""
    manifest, run = out / MANIFEST_NAME, out / WORK / "run.json"
    if manifest.is_file():
        done = json.loads(manifest.read_text())
        if done.get("fingerprint") == fingerprint:
            return done
        raise InputError(f"--out {out}: holds a finished training run with other inputs; "
                         f"choose another directory")
    if run.is_file() and json.loads(run.read_text()) != fingerprint:
        raise InputError(f"--out {out}: holds an unfinished run with other inputs "
                         f"(model, data or settings); delete it or choose another directory")
    return None


def _result(manifest: dict, out: Path) -> TrainResult:
    return TrainResult(adapter_dir=str(out), log_path=str(out / LOG_NAME),
                       manifest_path=str(out / MANIFEST_NAME), notes=tuple(manifest["notes"]),
                       **{k: manifest[k] for k in (
                           "best_epoch", "best_valid_loss", "selection", "n_train", "n_valid",
                           "n_shortened", "n_completion_cut", "first_loss", "last_loss")})


def _install_adapter(source: Path, out: Path) -> None:
    """Move the adapter files into ``out``; each move is an atomic rename."""
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md"):
        if (source / name).is_file():
            os.replace(source / name, out / name)


@dataclass(frozen=True)
class Prepared:
    """A training run's checked inputs (step 1 of 4): nothing loaded yet."""

    model: str  # the name recorded (the embedded model's when none was given)
    model_path: str  # where it loads from
    model_args: dict[str, Any]
    train: Sequence[Example]
    valid: Sequence[Example]
    out: Path
    config: TrainConfig
    init_adapter: str | None
    fingerprint: dict[str, Any]
    done: dict[str, Any] | None  # the finished manifest when ``out`` already holds this run


@dataclass(frozen=True)
class Loaded:
    """The tokenised examples and the base model with its trainable adapter (step 2 of 4)."""

    tokenizer: Any
    train: list[Encoded]
    valid: list[Encoded]
    peft_model: Any


@dataclass(frozen=True)
class Fitted:
    """What training left behind (step 3 of 4): the adapter to keep and the run's facts."""

    adapter: Path  # the folder holding the kept epoch's adapter files
    best: dict[str, Any] | None  # the kept epoch's best.json (None: the last epoch is kept)
    selection: str
    notes: list[str]
    n_shortened: int
    n_completion_cut: int
    started: str


def resolve_model(model: str | None, model_args: dict[str, Any] | None
                  ) -> tuple[str, str, dict[str, Any]]:
    """(recorded name, path to load, checked model args): a bad model or model arg fails here,
    before any data or weights load."""
    from .. import models

    model, model_args = models.split_revision(model, model_args)
    models.loading_kwargs("hf", model_args)  # checks them: a bad key or dtype, no bitsandbytes
    model_path = models.resolve(model, model_args)
    return str(model or models.DEFAULT_MODEL), model_path, model_args


def prepare(model: str | None, train: Sequence[Example], valid: Sequence[Example],
            out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(),
            init_adapter: str | None = None, model_args: dict[str, Any] | None = None) -> Prepared:
    """Step 1: check the inputs and find out whether ``out_dir`` already holds this run."""
    if not train:
        raise InputError("no training examples (check --limit and the data)")
    name, model_path, model_args = resolve_model(model, model_args)
    fingerprint = _fingerprint(name, train, valid, config, init_adapter, model_args)
    out = Path(out_dir)
    return Prepared(name, model_path, model_args, train, valid, out, config, init_adapter,
                    fingerprint, _check_out_dir(out, fingerprint))


def load(run: Prepared) -> Loaded:
    """Step 2: tokenise the examples and load the base with a trainable LoRA adapter."""
    from .. import models, profile

    tokenizer = models.load_tokenizer(run.model_path, run.model_args)
    train = _encode_all(run.train, tokenizer, run.config)
    valid = _encode_all(run.valid, tokenizer, run.config)
    with profile.current().span("load"):
        peft_model = _load_peft_model(run.model_path, run.config, run.init_adapter, run.model_args)
    return Loaded(tokenizer, train, valid, peft_model)


def _length_notes(loaded: Loaded, config: TrainConfig) -> tuple[list[str], int, int]:
    """(notes, shortened, completion cut) about examples longer than ``max_length``."""
    encoded = loaded.train + loaded.valid
    n_short = sum(e.shortened for e in encoded)
    n_cut = sum(e.completion_cut for e in encoded)
    notes = []
    if n_short:
        notes.append(f"{n_short} of {len(encoded)} examples were longer than "
                     f"max_length {config.max_length}: their prompts lost tokens from the left, "
                     f"completions kept whole")
    if n_cut:
        notes.append(f"{n_cut} completions alone exceeded max_length {config.max_length}: "
                     f"their first {config.max_length} tokens were kept, without prompt")
    if not loaded.valid:
        notes.append("no validation examples: keeping the last epoch")
    return notes, n_short, n_cut


def fit(run: Prepared, loaded: Loaded, *, notes: Sequence[str] = (), callbacks: Sequence = (),
        say: Callable[[str], None] = to_stderr) -> Fitted:
    """Step 3: train (resuming from the last checkpoint in ``out/_work``), keeping the epoch
    with the lowest validation loss (the last one without validation examples)."""
    from transformers import PrinterCallback, Trainer

    from .. import profile

    config, work = run.config, run.out / WORK
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "run.json", json.dumps(run.fingerprint, indent=1))
    log_path = run.out / LOG_NAME
    checkpoint = last_checkpoint(work / CHECKPOINTS)
    if checkpoint is not None:
        _trim_log(log_path, int(checkpoint.name.split("-")[1]))
    started = _now()
    found, n_short, n_cut = _length_notes(loaded, config)
    notes = [*notes, *found]
    with JsonlAppender(log_path) as log:
        if checkpoint is None:
            for note in notes:
                log.write({"event": "note", "message": note})
        else:
            log.write({"event": "resume", "checkpoint": checkpoint.name})
            say(f"resuming from {checkpoint}")
        for note in notes:
            say(note)
        peft_model = loaded.peft_model
        trainer = Trainer(
            model=peft_model, args=_training_args(config, work / CHECKPOINTS, bool(loaded.valid),
                                                  peft_model.get_base_model().dtype),
            train_dataset=[e.features() for e in loaded.train],
            eval_dataset=[e.features() for e in loaded.valid] or None,
            data_collator=collator(loaded.tokenizer, config.pad_to, config.packing),
            processing_class=loaded.tokenizer,
            callbacks=[*_callbacks(log, work / BEST, config.progress), *callbacks])
        trainer.remove_callback(PrinterCallback)  # Progress prints the log dicts, on stderr
        with profile.current().span("train"):  # forward, backward, optimizer, evaluation, checkpoints
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    best = _read_best(work / BEST) if loaded.valid else None
    if best is None:
        final = work / "last"
        shutil.rmtree(final, ignore_errors=True)
        trainer.model.save_pretrained(final)  # type: ignore[union-attr,operator]  # a PeftModel
        return Fitted(final, None, "last epoch (no validation examples)", notes, n_short, n_cut,
                      started)
    return Fitted(work / BEST, best, "lowest validation loss", notes, n_short, n_cut, started)


def finish(run: Prepared, loaded: Loaded, fitted: Fitted,
           say: Callable[[str], None] = to_stderr) -> TrainResult:
    """Step 4: move the kept adapter into ``out``, write the manifest (which marks the run
    done) and remove the work folder."""
    from .. import models

    best, config = fitted.best, run.config
    losses = [r["loss"] for r in JsonlAppender(run.out / LOG_NAME).records() if "loss" in r]
    manifest = {
        "model": run.model, "model_path": run.model_path, "init_adapter": run.init_adapter,
        "fingerprint": run.fingerprint, "data": run.fingerprint["data"],
        "config": config.model_dump(mode="json", exclude={"progress"}),
        "seed": config.seed, "versions": versions(), "started": fitted.started, "finished": _now(),
        "provenance": {**models.loaded_provenance("hf", run.model, run.model_args,
                                                  loaded.peft_model.get_base_model()),
                       "init_adapter_sha256": provenance.adapter_sha256(run.init_adapter),
                       **provenance.environment()},
        "best_epoch": best["epoch"] if best else None,
        "best_valid_loss": best["valid_loss"] if best else None, "selection": fitted.selection,
        "epochs_trained": config.epochs, "n_train": len(loaded.train), "n_valid": len(loaded.valid),
        "n_shortened": fitted.n_shortened, "n_completion_cut": fitted.n_completion_cut,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "notes": fitted.notes,
    }
    _install_adapter(fitted.adapter, run.out)
    atomic_write_text(run.out / MANIFEST_NAME, json.dumps(manifest, indent=1))  # marks the run done
    shutil.rmtree(run.out / WORK, ignore_errors=True)
    result = _result(manifest, run.out)
    say(f"adapter -> {run.out} ({fitted.selection}"
        + (f": epoch {result.best_epoch}, valid loss {result.best_valid_loss:.4f})" if best else ")"))
    return result


def train_lora(model: str | None, train: Sequence[Example], valid: Sequence[Example],
               out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(),
               init_adapter: str | None = None, *, model_args: dict[str, Any] | None = None,
               notes: Sequence[str] = (), callbacks: Sequence = (),
               say: Callable[[str], None] = to_stderr) -> TrainResult:
    """Fine-tune a LoRA adapter on ``train`` (completion-only loss), keep the best epoch on
    ``valid`` (the last epoch when ``valid`` is empty), and write it to ``out_dir``:
    :func:`prepare`, :func:`load`, :func:`fit`, :func:`finish`.

    Reruns are safe: a finished run with the same inputs is returned as is, an interrupted one
    resumes from its last checkpoint. ``init_adapter`` continues training an existing adapter.
    ``model_args``: how the base loads (dtype, quantization for QLoRA, revision ...; see
    :func:`valueharms.models.loading_kwargs`). ``callbacks``: extra ``TrainerCallback``
    objects (e.g. early stopping).
    """
    run = prepare(model, train, valid, out_dir, config, init_adapter, model_args)
    if run.done is not None:
        say(f"{run.out}: already trained with these inputs; nothing to do")
        return _result(run.done, run.out)
    loaded = load(run)
    return finish(run, loaded, fit(run, loaded, notes=notes, callbacks=callbacks, say=say), say)


def __getattr__(name: str) -> Any:
    """The VIM stage's old home (deprecated; moved to :mod:`valueharms.align.vim`, and
    ``run_benign`` to :mod:`valueharms.align.benign`, one release ago)."""
    if name in ("VimResult", "train_vim", "run_vim"):
        from . import vim

        return getattr(vim, name)
    if name == "run_benign":
        from . import benign

        return benign.run_benign
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
