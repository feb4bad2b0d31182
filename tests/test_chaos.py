"""A study killed with SIGKILL at seeded random moments, in every kind of step, and restarted
each time, finishes with the files of an uninterrupted run; on Ray, with step workers killed
mid-task. The driver is bench/chaos_study.py (which runs more seeds)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.needs_data()]


def _bench():
    spec = importlib.util.spec_from_file_location("chaos_study", ROOT / "bench" / "chaos_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chaos_study():
    return _bench()


@pytest.fixture(scope="module")
def reference(chaos_study, tiny_model_dir, tmp_path_factory) -> Path:
    study = chaos_study.write_study(tmp_path_factory.mktemp("chaos") / "reference", tiny_model_dir)
    chaos_study.Run(study).finish()
    return study


def test_a_study_killed_in_every_kind_of_step_finishes_identical(chaos_study, reference,
                                                                 tiny_model_dir, tmp_path):
    outcome = chaos_study.chaos(1, tiny_model_dir, tmp_path, per_kind=2, reference=reference)
    assert outcome.differences == []
    assert len(outcome.kills) >= 10 and outcome.starts == len(outcome.kills) + 1
    landed = {k.step.split("/")[0] for k in outcome.kills if k.step}
    assert landed == set(chaos_study.KINDS), outcome.landed
    assert outcome.files >= 20 and outcome.records > 100


@pytest.mark.ray
def test_killed_ray_workers_leave_the_same_study(chaos_study, reference, tiny_model_dir,
                                                 tmp_path):
    """Compared with the local reference: every step runs with the driver's thread count on
    Ray too (Ray starts workers with one thread; a different count changed the adapters)."""
    pytest.importorskip("ray")
    outcome = chaos_study.chaos(1, tiny_model_dir, tmp_path, per_kind=2, executor="ray",
                                reference=reference)
    assert outcome.differences == []
    assert len(outcome.kills) == 2 and all(k.step for k in outcome.kills)
    assert outcome.files >= 20 and outcome.records > 100
