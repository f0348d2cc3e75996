"""Slow copies of networks: Polyak targets for the critic and the EMA of the policy.

Both are the same operation, ``target <- (1 - rate) * target + rate * source``, with a different
rate schedule; buffers (constant keypoint grids, the power-iteration vector) are copied outright.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """One fused lerp over all parameters (``torch._foreach_lerp_``): a handful of kernels per update
    instead of one per tensor, which is most of the EMA's cost on small networks."""
    target_params = list(target.parameters())
    source_params = [p.detach() for p in source.parameters()]
    if len(target_params) != len(source_params):
        raise RuntimeError("soft_update: target and source networks have different structures")
    if target_params:
        torch._foreach_lerp_(target_params, source_params, rate)
    target_bufs, source_bufs = list(target.buffers()), list(source.buffers())
    if target_bufs:
        torch._foreach_copy_(target_bufs, source_bufs)


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
