"""Checkpoints written before a refactor still load, resume and act the same (tests/fixtures/README.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from train_support import small_overrides, write_store

from robot_offrl.checkpoint import load_checkpoint
from robot_offrl.config import compose
from robot_offrl.runtime import PolicyRuntime
from robot_offrl.train.loop import train

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v2_rise"
# On top of small_overrides(..., "rise"): the settings the fixture was written with.
WRITTEN_WITH = (
    "policy.hidden_dim=16", "critic.hidden_dim=16", "algo.lipschitz_hidden=16", "policy.timestep_embed_dim=16",
    "trainer.checkpoint_every=4", "trainer.val_every=4", "trainer.keep_checkpoints=1",
    "algo.lipschitz_form=spectral_mlp",  # the rise default when it was written (hinge again since)
)


def test_old_checkpoint_reads_with_its_optimizer_state() -> None:
    ckpt = load_checkpoint(FIXTURE, with_optimizer=True)
    assert ckpt.step == 4
    assert ckpt.meta["format_version"] == 2
    assert ckpt.config.algo.name == "rise"
    assert ckpt.model_state and ckpt.optim_state


def test_old_checkpoint_acts_as_it_did_when_written() -> None:
    expected = json.loads((FIXTURE / "expected_plan.json").read_text())
    policy = PolicyRuntime.load(FIXTURE, device="cpu")
    obs = {key: np.asarray(value, dtype=np.float32) for key, value in expected["obs"].items()}
    np.testing.assert_allclose(policy.plan(obs), np.asarray(expected["plan"], dtype=np.float32), atol=1e-5)


def test_old_run_resumes(tmp_path: Path) -> None:
    """The settings it was trained with, today's config reader: resume accepts them and trains on."""
    store = write_store(tmp_path / "s.zarr", episodes=6, length=20)
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    replaced = tuple(key.split("=")[0] + "=" for key in WRITTEN_WITH)
    overrides = [o for o in small_overrides(store, run, "rise", steps=6) if not o.startswith(replaced)]
    result = train(compose("train", [*overrides, *WRITTEN_WITH]))
    assert result.step == 6
    assert np.isfinite(result.losses["loss"])
