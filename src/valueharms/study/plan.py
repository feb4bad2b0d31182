"""Turn a Study into steps. A step's id hashes its config and its inputs' ids, so a step is
redone exactly when something it depends on changed, and skipped when its output exists."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..console import LOG
from ..systems import SystemKey
from .spec import PER_TARGET, Study

KINDS = ("train", "generate", "score", "alignment", "metrics", "report")


@dataclass(frozen=True)
class Step:
    kind: str
    name: str
    config: dict[str, Any]
    deps: tuple[str, ...] = ()
    gpu: bool = False  # asks the Ray executor for a GPU when the cluster has one
    id: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(json.dumps(
            {"kind": self.kind, "config": self.config, "deps": self.deps},
            sort_keys=True, default=str).encode()).hexdigest()[:12]
        object.__setattr__(self, "id", f"{self.kind}/{self.name}-{digest}")

    def out_dir(self, study: Study) -> Path:
        return study.out / "steps" / self.id

    def done(self, study: Study) -> bool:
        """Its manifest exists and every file the manifest lists is there, at its size (a
        manifest whose outputs went missing or shrank is not done; the step runs again)."""
        out = self.out_dir(study)
        try:
            listed = json.loads((out / MANIFEST).read_text()).get("outputs", {})
        except (OSError, ValueError):  # missing, or cut short: not done
            return False
        finished = all(outputs(out).get(name) == size for name, size in listed.items())
        if self.kind == "report":  # its product lives outside the step folder
            finished = finished and (study.out / "report" / "index.html").is_file()
        return finished


MANIFEST = "manifest.json"


def outputs(out: Path) -> dict[str, int]:
    """Size of every file a step left in its folder (not the manifest, not hidden lock files,
    not its log.txt, which a resumed step appends to)."""
    if not out.is_dir():
        return {}
    return {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
            and p != out / LOG}


def plan(study: Study) -> list[Step]:
    """All steps in an order where every step comes after its dependencies."""
    base = {"model": study.model, "seed": study.seed, "data_dir": study.data_dir}
    if study.model_args:  # only when set, so studies without them keep their step ids
        base["model_args"] = study.model_args
    steps: list[Step] = []
    adapters: dict[str, Step] = {}
    for method in study.methods:
        if method == "vim":
            for t in study.targets:
                step = Step("train", f"vim-{t.name}", {**base, "method": "vim", "target": t.name,
                            "scores": list(t.scores), **study.train.set_values()}, gpu=True)
                adapters[str(SystemKey("vim", t.name))] = step
                steps.append(step)
        elif method not in PER_TARGET and SystemKey.parse(method).dataset is not None:
            dataset = SystemKey.parse(method).dataset
            step = Step("train", f"benign-{dataset}", {**base, "method": "benign",
                        "dataset": dataset, **study.benign.set_values()}, gpu=True)
            adapters[method] = step
            steps.append(step)
    systems = study.system_keys()
    chunk = study.generation.systems_per_step or len(systems)
    score_steps = []
    for bench, bench_options in study.benchmarks.items():
        options = bench_options.set_values()
        for i in range(0, len(systems), chunk):
            group = systems[i:i + chunk]
            bases = [SystemKey.parse(s).base for s in group]
            trained = {b: adapters[b].id for b in bases if b in adapters}
            label = bench if chunk >= len(systems) else f"{bench}-{i // chunk}"
            gen = Step("generate", label, {**base, "benchmark": bench, "options": options,
                       "systems": group, "adapters": trained, "decoding": study.decoding.set_values(),
                       "generation": study.generation.set_values(), "device": study.device},
                       tuple(sorted(set(trained.values()))), gpu=True)
            scorer = study.scorers[bench]
            score = Step("score", label, {"scorer": scorer,
                         "options": study.scorer_options.get(scorer, {})}, (gen.id,))
            steps += [gen, score]
            score_steps.append(score)
    aligned = [k for k in adapters if SystemKey.parse(k).kind == "vim"]
    prompted = [str(SystemKey("prompt", t.name)) for t in study.targets] \
        if "prompt" in study.methods else []
    # Your own adapter: systems have no target of their own: measured against every target.
    own = [str(SystemKey("adapter", name, location=location))
           for name, location in study.adapters.items()] if study.targets else []
    align_step = None
    if aligned or prompted or own:
        # [generation] prefix_cache applies to the check's backend too; named only when set,
        # so the step ids of studies that never set it stay as they were
        prefix = {k: v for k, v in study.generation.set_values().items() if k == "prefix_cache"}
        align_step = Step("alignment", "survey", {**base, "systems": aligned + prompted + own,
                          "adapters": {k: adapters[k].id for k in aligned},
                          "limit": study.train.limit, "device": study.device,
                          "method": study.analysis.alignment,
                          "instrument": study.analysis.instrument, **prefix},
                          tuple(adapters[k].id for k in aligned), gpu=True)
        steps.append(align_step)
    resamples = {k: v for k, v in study.analysis.set_values().items() if k == "resamples"}
    metrics = Step("metrics", "all", {"baseline": study.analysis.baseline,
                   "seed": study.seed, **resamples}, tuple(s.id for s in score_steps))
    report = Step("report", "index", {"baseline": metrics.config["baseline"]},
                  (metrics.id,) + ((align_step.id,) if align_step else ()))
    return steps + [metrics, report]
