"""How the node gets its policy: any ``PlanningPolicy`` (robot_offrl.runtime), through a factory.

The node never constructs a model itself; ``configure`` calls a factory (by default
``PolicyRuntime.load`` on the ``checkpoint`` parameter), so tests and bring-up can hand in any
object with the same interface and everything else in the node is exercised unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl.runtime.protocol import PlanningPolicy

from .params import NodeConfig

PolicyFactory = Callable[[NodeConfig], PlanningPolicy]


def load_runtime(cfg: NodeConfig) -> PlanningPolicy:
    """Default factory: load the checkpoint with the project's one policy runtime (lazily imported)."""
    if not cfg.checkpoint:
        raise ConfigError("parameter checkpoint is empty; pass checkpoint:=/path/to/run/or/checkpoint")
    from robot_offrl.runtime import PolicyRuntime

    return PolicyRuntime.load(
        cfg.checkpoint,
        device=cfg.device,
        # 0 keeps the checkpoint's own setting (e.g. K = 1 for a Diffusion Policy checkpoint).
        num_candidates=cfg.num_candidates or None,
        num_inference_steps=cfg.num_inference_steps or None,
        n_action_steps=cfg.n_action_steps or None,
        amp=cfg.amp or None,
        conv1d=cfg.conv1d or None,
        prune_after=None if cfg.prune_after < 0 else cfg.prune_after,
        prune_keep=cfg.prune_keep or None,
    )


def check_replanning(policy: PlanningPolicy) -> None:
    """Refuse a policy whose chunk choice depends on more actions than this node is sure to run.

    The node replans every control period and each new chunk replaces the last, so only a chunk's
    first action is sure to execute. A critic trained with ``critic.action_steps = n > 1`` picks chunks
    by their first n actions; following such chunks for one step would act on a choice made for
    motion that never happens. ``scored_actions`` is optional (1 when absent), like the rest of the
    runtime's extras.
    """
    scored = int(getattr(policy, "scored_actions", 1))
    if scored > 1:
        raise ConfigError(
            f"this checkpoint's critic chooses chunks by their first {scored} actions (critic.action_steps="
            f"{scored}), but the node replans every control period and only the first action is sure to run; "
            "deploy a checkpoint trained with critic.action_steps=1, or set num_candidates:=1"
        )


def chunk_length_limit(policy: PlanningPolicy, cfg: NodeConfig) -> int:
    """Most actions a chunk may hold: the parameter, or (0) what the loaded policy executes per plan."""
    return cfg.n_action_steps or int(getattr(policy, "n_action_steps", 0)) or 1


def check_chunk(chunk: Any, n_action_steps: int, action_dim: int) -> np.ndarray:
    """The policy's output as float64 (n, A), or a clear error naming what came back."""
    arr = np.asarray(chunk, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != action_dim or not 1 <= arr.shape[0] <= n_action_steps:
        raise ConfigError(
            f"policy.plan returned shape {arr.shape}, expected (n <= {n_action_steps}, {action_dim}) "
            "for this checkpoint's action space"
        )
    return arr
