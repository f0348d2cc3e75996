"""The IDQL critic objectives with SQIL-style flag rewards.

V regresses toward min(Q1_target, Q2_target)(s, a) with an upper expectile (an in-support
maximum over the data's actions, no out-of-distribution action is ever queried); Q regresses
toward r + gamma (1 - done) V(s') (or its n-step form when the critic scores n actions). The reward is 1 on every step of an expert episode and 0
otherwise, so a high Q means "this leads into expert behaviour soon".
"""

from __future__ import annotations

import torch


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(u < 0)| * u^2 elementwise, u = target - prediction."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.square()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the rows kept by ``mask``; 0 (with a gradient path) when none is kept.

    Masking instead of indexing keeps tensor shapes fixed, which torch.compile and DDP prefer.
    """
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def td_target(reward: torch.Tensor, done: torch.Tensor, next_value: torch.Tensor, gamma: float) -> torch.Tensor:
    return reward + gamma * (1.0 - done) * next_value


def n_step_td_target(
    reward: torch.Tensor,
    reward_steps: torch.Tensor,
    done: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    horizon: int,
) -> torch.Tensor:
    """sum_{i < m} gamma^i r + gamma^n (1 - done) V(s_{t+n}), with m = ``reward_steps`` <= n = ``horizon``.

    Flag rewards are constant within an episode, so the m rewards sum in closed form. m < n only
    where the episode ends inside the chunk under ``terminal: done`` (then done = 1 as well).
    With n = 1 this is ``td_target`` exactly (bit for bit, so one-step runs train as before).
    """
    if horizon == 1:
        return td_target(reward, done, next_value, gamma)
    reward_sum = reward * (1.0 - gamma ** reward_steps) / (1.0 - gamma)
    return reward_sum + gamma**horizon * (1.0 - done) * next_value


def value_loss(
    target_q: torch.Tensor, value: torch.Tensor, expectile: float, mask: torch.Tensor
) -> torch.Tensor:
    return masked_mean(expectile_loss(target_q.detach() - value, expectile), mask)


def q_loss(
    q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    target = target.detach()
    return masked_mean((q1 - target).square() + (q2 - target).square(), mask)
