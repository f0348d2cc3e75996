"""Shared builders for the learning-core tests: real zarr stores in tmp_path, tiny configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema


def make_schema(
    lowdim: dict[str, int] | None = None,
    rgb: dict[str, tuple[int, int, int]] | None = None,
    action_names: Sequence[str] = ("dx", "dy"),
) -> StoreSchema:
    lowdim = {"pos": 2} if lowdim is None else lowdim
    obs = [KeySpec(k, "float32", (d,), "lowdim") for k, d in lowdim.items()]
    obs += [KeySpec(k, "uint8", shape, "rgb") for k, shape in (rgb or {}).items()]
    n = len(action_names)
    action = ActionSpace(
        names=list(action_names), units=["normalized"] * n, mode="delta", low=[-1.0] * n, high=[1.0] * n
    )
    return StoreSchema(obs=obs, action=action, control_rate_hz=10.0, robot="PointMass", task="toy")


def write_store(path: Path, schema: StoreSchema, episodes: Sequence[dict[str, Any]]) -> EpisodeStore:
    """episodes: dicts with obs (key -> (T, ...)), actions (T, A), expert, and optional source."""
    store = EpisodeStore.create(str(path), schema, durable=False)
    for ep in episodes:
        store.append_episode(
            obs=ep["obs"],
            actions=ep["actions"],
            expert=bool(ep["expert"]),
            source=ep.get("source", "scripted" if ep["expert"] else "play"),
            success=ep.get("success"),
        )
    return store


def counting_episode(start_value: float, length: int, expert: bool, rgb_key: str | None = None) -> dict[str, Any]:
    """Observations and actions that encode their own global position, so windows can be checked exactly."""
    t = np.arange(length, dtype=np.float32)
    obs: dict[str, np.ndarray] = {"pos": np.stack([start_value + t, -(start_value + t)], axis=1)}
    if rgb_key is not None:
        frames = np.zeros((length, 8, 8, 3), dtype=np.uint8)
        frames[:] = (np.arange(length, dtype=np.int64)[:, None, None, None] + int(start_value)) % 256
        obs[rgb_key] = frames
    actions = np.stack([start_value + t, start_value + t], axis=1).astype(np.float32)
    return {"obs": obs, "actions": actions, "expert": expert}


def tiny_cfg(
    name: str = "rise",
    denoiser: str = "mlp",
    obs_horizon: int = 2,
    pred_horizon: int = 4,
    **overrides: Any,
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "algo": {
            "name": name,
            "data_filter": "expert" if name == "bc" else "all",
            "use_critic": name in ("idql", "rise"),
            "lipschitz_weight": 0.1 if name == "rise" else 0.0,
            "nn_augment": {"enabled": name == "rise", "k": 4, "threshold": 0.2, "skip_first": 1},
            "selection": {"num_candidates": 4, "temperature": 1.0, "mode": "argmax"},
        },
        "policy": {
            "denoiser": denoiser,
            "obs_horizon": obs_horizon,
            "pred_horizon": pred_horizon,
            "n_action_steps": min(2, pred_horizon),
            "num_train_timesteps": 100,
            "num_inference_steps": 5,
            "scheduler": "ddim",
            "hidden_dim": 32,
            "num_blocks": 1,
            "timestep_embed_dim": 16,
            "cond_dim": 32,
            "down_dims": [16, 32],
            "kernel_size": 3,
            "n_groups": 4,
        },
        "critic": {"gamma": 0.9, "expectile": 0.9, "tau": 0.05, "hidden_dim": 32, "num_layers": 2},
        "encoder": {"crop": None, "num_keypoints": 4, "feature_dim": 8},
        "trainer": {"ema_power": 0.75, "ema_max_decay": 0.999},
        "task": {"lowdim_keys": [], "image_keys": []},
    }
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """One intra-op thread: on a shared 2-core machine, spinning OpenMP workers make tiny nets ~7x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def optimise(agent: Any, ds: Any, opt: torch.optim.Optimizer, steps: int, batch_size: int,
             rng: np.random.Generator) -> None:
    """The plain training loop the learning tests share: random batches, one optimiser, EMA/targets."""
    for step in range(steps):
        batch = ds.get_batch(rng.choice(len(ds), batch_size))
        loss = agent.compute_losses(batch, step)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        agent.after_optimizer_step(step + 1)
