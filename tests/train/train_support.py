"""Small real episode stores for trainer and runtime tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema

LOWDIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}


def write_store(path: Path, episodes: int = 10, length: int = 30, image: tuple[int, int] | None = None,
                seed: int = 0) -> Path:
    """Smooth random-walk episodes (learnable), a third of them flagged expert."""
    specs = [KeySpec(k, "float32", (d,), "lowdim") for k, d in LOWDIM.items()]
    if image is not None:
        specs.append(KeySpec("agentview_image", "uint8", (*image, 3), "rgb"))
    schema = StoreSchema(
        obs=specs,
        action=ActionSpace(names=[f"a{i}" for i in range(7)], units=["normalized"] * 7, mode="delta",
                           low=[-1.0] * 7, high=[1.0] * 7),
        control_rate_hz=20.0, robot="Panda", task="lift",
    )
    store = EpisodeStore.create(str(path), schema)
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        obs = {k: np.cumsum(rng.normal(0, 0.05, size=(length, d)), axis=0).astype(np.float32) for k, d in LOWDIM.items()}
        if image is not None:
            obs["agentview_image"] = rng.integers(0, 255, size=(length, *image, 3), dtype=np.uint8)
        actions = np.tanh(obs["robot0_eef_pos"][:, :1] + rng.normal(0, 0.1, size=(length, 7))).astype(np.float32)
        store.append_episode(obs=obs, actions=actions, expert=e % 3 == 0,
                             source="scripted" if e % 3 == 0 else "play", success=None)
    return path


@pytest.fixture
def lowdim_store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "lowdim.zarr")


def small_overrides(store: Path, out: Path, algo: str = "bc", steps: int = 20) -> list[str]:
    """A tiny but complete config: every trainer feature on, networks small enough for 2 CPU cores."""
    return [
        f"data={store}", f"out={out}", f"algo={algo}", f"trainer.steps={steps}", "trainer.batch_size=16",
        "trainer.warmup_steps=2", "trainer.log_every=5", "trainer.val_every=10", "trainer.val_batches=1",
        "trainer.checkpoint_every=10", "trainer.keep_checkpoints=10", "trainer.progress=false",
        "trainer.val_fraction=0.2", "policy.hidden_dim=64", "policy.num_blocks=1", "policy.pred_horizon=8",
        "policy.n_action_steps=4", "critic.hidden_dim=64", "critic.num_layers=2",
        "algo.selection.num_candidates=" + ("1" if algo.startswith("bc") else "8"),
    ]


def rehash_checkpoint(folder: Path) -> None:
    """Re-record meta.json's SHA-256 digests after a test edits a checkpoint on purpose.

    Simulates a checkpoint that was *written* with these contents (e.g. weights that went NaN in
    training), as opposed to one damaged on disk afterwards, which load_checkpoint refuses.
    """
    from robot_offrl.checkpoint import META_FILE, file_digest

    meta = json.loads((folder / META_FILE).read_text())
    meta["sha256"] = {name: file_digest(folder / name) for name in meta["sha256"]}
    (folder / META_FILE).write_text(json.dumps(meta, indent=1))
