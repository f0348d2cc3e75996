"""Noise-prediction networks: eps_theta(noisy action chunk, diffusion step, observation condition).

Both denoisers share one call signature, ``(noisy (B, Tp, A), timesteps (B,), cond (B, C)) ->
(B, Tp, A)``, so the diffusion objective and the sampler never care which one is configured.
The U-Net convolves along time, which is what lets a chunk of 16 actions stay smooth; the
MLP-ResNet is the cheap alternative for low-dim tasks with short chunks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robot_offrl.models.conv1d import Conv1d

DENOISERS = ("unet", "mlp")  # policy.denoiser: ConditionalUnet1D | MLPResNetDenoiser (algos/agent.py builds one)


class SinusoidalTimeEmbedding(nn.Module):
    """Integer diffusion step -> (B, dim) sin/cos features (transformer positional encoding)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=timesteps.device) / max(half - 1, 1))
        args = timesteps.float()[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], dim=-1)


def timestep_mlp(embed_dim: int) -> nn.Sequential:
    return nn.Sequential(
        SinusoidalTimeEmbedding(embed_dim),
        nn.Linear(embed_dim, embed_dim * 4),
        nn.Mish(),
        nn.Linear(embed_dim * 4, embed_dim),
    )


def _broadcast_timesteps(timesteps: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(timesteps):
        timesteps = torch.tensor([timesteps], device=device)
    timesteps = timesteps.to(device).reshape(-1)
    return timesteps.expand(batch) if timesteps.numel() == 1 else timesteps


class Conv1dBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int) -> None:
        super().__init__(
            Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )


class FiLMResidualBlock1d(nn.Module):
    """Two conv blocks; the condition scales and shifts the channels in between (FiLM)."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.block1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, out_channels * 2))
        self.residual = Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        scale, shift = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = h * (1.0 + scale) + shift
        return self.block2(h) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """1-D temporal U-Net over the action chunk with FiLM conditioning (Diffusion Policy design).

    Each level halves the chunk length, so ``pred_horizon`` must be divisible by
    ``2 ** (len(down_dims) - 1)`` (checked in the policy config).
    """

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: tuple[int, ...] = (128, 256, 512),
        kernel_size: int = 5,
        n_groups: int = 8,
        timestep_embed_dim: int = 128,
    ) -> None:
        super().__init__()
        self.time_embed = timestep_mlp(timestep_embed_dim)
        film_dim = timestep_embed_dim + cond_dim
        dims = [action_dim, *down_dims]
        levels = list(zip(dims[:-1], dims[1:], strict=True))

        def res(i: int, o: int) -> FiLMResidualBlock1d:
            return FiLMResidualBlock1d(i, o, film_dim, kernel_size, n_groups)

        self.down = nn.ModuleList()
        for idx, (d_in, d_out) in enumerate(levels):
            last = idx == len(levels) - 1
            resample: nn.Module = nn.Identity() if last else nn.Conv1d(d_out, d_out, 3, stride=2, padding=1)
            self.down.append(nn.ModuleList([res(d_in, d_out), res(d_out, d_out), resample]))
        self.mid = nn.ModuleList([res(down_dims[-1], down_dims[-1]), res(down_dims[-1], down_dims[-1])])
        self.up = nn.ModuleList()
        for d_in, d_out in reversed(levels[1:]):  # one upsample per downsample: back to pred_horizon
            upsample = nn.ConvTranspose1d(d_in, d_in, 4, stride=2, padding=1)
            self.up.append(nn.ModuleList([res(d_out * 2, d_in), res(d_in, d_in), upsample]))
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
            Conv1d(down_dims[0], action_dim, 1),
        )

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        t = _broadcast_timesteps(timesteps, noisy.shape[0], noisy.device)
        film = torch.cat([self.time_embed(t).to(cond.dtype), cond], dim=-1)
        x = noisy.transpose(1, 2)  # (B, A, Tp): convolve along time
        skips: list[torch.Tensor] = []
        for block1, block2, downsample in self.down:  # type: ignore[misc]
            x = block2(block1(x, film), film)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, film)
        for block1, block2, upsample in self.up:  # type: ignore[misc]
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(block2(block1(x, film), film))
        return self.final(x).transpose(1, 2)


class ResidualMLPBlock(nn.Module):
    """x + W2 mish(W1 LayerNorm(x)): the pre-norm residual block of IDQL's LN-ResNet."""

    def __init__(self, dim: int, expansion: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim * expansion), nn.Mish(), nn.Linear(dim * expansion, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class MLPResNetDenoiser(nn.Module):
    """The whole chunk flattened, with step embedding and condition, through LayerNorm residual blocks."""

    def __init__(
        self,
        action_dim: int,
        pred_horizon: int,
        cond_dim: int,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        timestep_embed_dim: int = 64,
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.pred_horizon = pred_horizon
        flat = action_dim * pred_horizon
        self.time_embed = timestep_mlp(timestep_embed_dim)
        self.inp = nn.Linear(flat + timestep_embed_dim + cond_dim, hidden_dim)
        self.blocks = nn.Sequential(*(ResidualMLPBlock(hidden_dim) for _ in range(num_blocks)))
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Mish(), nn.Linear(hidden_dim, flat))

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        b = noisy.shape[0]
        t = _broadcast_timesteps(timesteps, b, noisy.device)
        x = torch.cat([noisy.reshape(b, -1), self.time_embed(t).to(cond.dtype), cond], dim=-1)
        x = self.blocks(self.inp(x))
        return self.out(x).reshape(b, self.pred_horizon, self.action_dim)
