"""The VIM training stage: its two LoRA fine-tunes for one target profile, beside its data
(:mod:`valueharms.align.vim_data`).

Stage 1 trains on the target's arguments (what it would / would not say) into
``out/stage1``; stage 2 continues the best stage-1 adapter on survey answers into
``out/stage2``, the aligned model. ``out/manifest.json`` sums up both stages.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig, VimOptions, train_config
from ..files import atomic_write_text
from ..values import Profile
from .trainer import MANIFEST_NAME, TrainResult, _now, resolve_model, to_stderr, train_lora


@dataclass(frozen=True)
class VimResult:
    """Both stages' results and the VIM run's manifest."""

    out_dir: str
    stage1: TrainResult
    stage2: TrainResult
    negatives_only: bool  # the target had no positive arguments
    manifest_path: str


def train_vim(model: str | None, profile: Profile, out_dir: str | os.PathLike,
              config: TrainConfig = TrainConfig(), *, data_dir: str | None = None,
              limit: int | None = None, threshold: float = 3, strategy: str = "min",
              seed: int = 42, model_args: dict[str, Any] | None = None,
              say: Callable[[str], None] = to_stderr) -> VimResult:
    """The two VIM stages for ``profile``: stage 1 (arguments) into ``out_dir/stage1``, then
    stage 2 (survey answers) into ``out_dir/stage2``, continuing the best stage-1 adapter."""
    from .vim_data import build_vim

    data = build_vim(profile, data_dir=data_dir, threshold=threshold, strategy=strategy,
                     seed=seed, limit=limit)
    out = Path(out_dir)
    notes = list(data.warnings)
    negatives_only = not any(ex.meta.get("polarity") == "pos" for ex in data.stage1)
    if negatives_only and not any("no positive" in note for note in notes):
        notes.append(f"{profile.name} has no positive arguments at threshold {threshold} "
                     f"({strategy} rule): stage 1 trains on negative arguments only")
    for note in dict.fromkeys(notes):
        say(note)
    say(f"stage 1 of 2: {profile.name}")
    stage1 = train_lora(model, data.split("stage1", "train"), data.split("stage1", "valid"),
                        out / "stage1", config, model_args=model_args, notes=notes, say=say)
    say(f"stage 2 of 2: {profile.name}, continuing {stage1.adapter_dir}")
    stage2 = train_lora(model, data.split("stage2", "train"), data.split("stage2", "valid"),
                        out / "stage2", config, init_adapter=stage1.adapter_dir,
                        model_args=model_args, say=say)
    manifest = {
        "method": "vim", "model": str(model), "target": profile.name,
        "profile": profile.as_dict(), "threshold": threshold,
        "strategy": strategy, "seed": seed, "limit": limit, "negatives_only": negatives_only,
        "warnings": list(dict.fromkeys(notes)),
        "stages": {"stage1": _stage_summary(stage1), "stage2": _stage_summary(stage2)},
        "finished": _now(),
    }
    atomic_write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=1))
    return VimResult(str(out), stage1, stage2, negatives_only, str(out / MANIFEST_NAME))


def _stage_summary(result: TrainResult) -> dict[str, Any]:
    return {"adapter_dir": result.adapter_dir, "best_epoch": result.best_epoch,
            "best_valid_loss": result.best_valid_loss, "n_train": result.n_train,
            "n_valid": result.n_valid, "n_shortened": result.n_shortened,
            "first_loss": result.first_loss, "last_loss": result.last_loss}


def run_vim(model: str | None, profile: Profile, out_dir: str | os.PathLike,
            options: VimOptions, *, seed: int = 42, data_dir: str | None = None,
            model_args: dict[str, Any] | None = None, progress: bool = True,
            say: Callable[[str], None] = to_stderr) -> VimResult:
    """The VIM training stage (``valueharms train vim`` and a study's VIM train step):
    ``profile``'s two stages with ``options``; the model is checked before any data is built."""
    resolve_model(model, model_args)
    return train_vim(model, profile, out_dir, train_config(options, seed=seed, progress=progress),
                     data_dir=data_dir, limit=options.limit, threshold=options.threshold,
                     strategy=options.strategy, seed=seed, model_args=model_args, say=say)
