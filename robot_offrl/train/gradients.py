"""Gradient clipping per parameter group (``trainer.grad_clip``, ``trainer.grad_clip_mode``)."""

from __future__ import annotations

import torch

from robot_offrl.errors import ConfigError

GRAD_CLIP_MODES = ("per_group", "global")


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float, mode: str) -> dict[str, torch.Tensor]:
    """Clip gradient norms to ``max_norm``; returns each group's norm before clipping, to log.

    ``per_group`` clips the policy and the critic separately (robomimic clips each network with its own
    optimiser): under one joint clip a growing TD gradient would shrink the policy's steps too.
    ``global`` is the legacy single clip over all parameters. ``max_norm <= 0`` clips nothing.
    """
    if mode not in GRAD_CLIP_MODES:
        raise ConfigError(f"trainer.grad_clip_mode must be one of {', '.join(GRAD_CLIP_MODES)}, got {mode!r}")
    if max_norm <= 0:
        return {}
    groups = {str(g.get("name", i)): list(g["params"]) for i, g in enumerate(optimizer.param_groups)}
    if mode == "global":
        everything = [p for params in groups.values() for p in params]
        return {"grad_norm/all": torch.nn.utils.clip_grad_norm_(everything, max_norm).detach()}
    return {f"grad_norm/{name}": torch.nn.utils.clip_grad_norm_(params, max_norm).detach()
            for name, params in groups.items()}
