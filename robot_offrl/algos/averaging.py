"""Slow copies of networks: Polyak targets for the critic and the EMA of the policy.

Both are the same operation, ``target <- (1 - rate) * target + rate * source``, with a different
rate schedule; buffers (constant keypoint grids, the power-iteration vector) are copied outright.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    target_params = list(target.parameters())
    source_params = list(source.parameters())
    if len(target_params) != len(source_params):
        raise RuntimeError("soft_update: target and source networks have different structures")
    for t_param, s_param in zip(target_params, source_params, strict=True):
        t_param.lerp_(s_param.detach(), rate)
    for t_buf, s_buf in zip(target.buffers(), source.buffers(), strict=True):
        t_buf.copy_(s_buf)


def ema_decay(step: int, power: float, max_decay: float, min_decay: float, inv_gamma: float, after: int) -> float:
    """Diffusion Policy's EMA warm-up: 1 - (1 + n / inv_gamma) ** -power, clamped.

    Early on the average follows the policy almost exactly (decay near 0) so the EMA weights are
    usable from the first checkpoint; later it averages over ever longer windows.
    """
    n = max(0, step - after - 1)
    if n <= 0:
        return 0.0
    decay = 1.0 - (1.0 + n / inv_gamma) ** -power
    return max(min_decay, min(decay, max_decay))
