"""The diffusion behaviour policy: encoder -> Lipschitz head -> denoiser, its loss and its sampler.

Training is the plain epsilon-prediction MSE over the whole action chunk (DDPM, 100 steps,
squared-cosine betas). Sampling draws K candidate chunks per observation in ONE batch of B*K
rows per denoising step (the observation is encoded once and repeated), which is what makes
K = 32..128 candidates affordable at replanning time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from robot_offrl.errors import ConfigError
from robot_offrl.models.encoders import ObsEncoder
from robot_offrl.models.lipschitz import LipschitzHead, SpectralMLPHead

SCHEDULER_KINDS = ("ddim", "ddpm")


def make_scheduler(kind: str, num_train_timesteps: int) -> Any:
    """A diffusers scheduler with the Diffusion Policy settings (squaredcos_cap_v2, clipped x0)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    common: dict[str, Any] = {
        "num_train_timesteps": num_train_timesteps,
        "beta_schedule": "squaredcos_cap_v2",
        "clip_sample": True,
        "prediction_type": "epsilon",
    }
    if kind == "ddpm":
        return DDPMScheduler(variance_type="fixed_small", **common)
    if kind == "ddim":
        return DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **common)
    raise ConfigError(f"policy.scheduler must be one of {', '.join(SCHEDULER_KINDS)}, got {kind!r}")


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device, then moved: seeded runs match across devices."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


class DiffusionPolicy(nn.Module):
    def __init__(
        self,
        encoder: ObsEncoder,
        head: LipschitzHead | SpectralMLPHead,
        denoiser: nn.Module,
        action_dim: int,
        pred_horizon: int,
        num_train_timesteps: int = 100,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.denoiser = denoiser
        self.action_dim = action_dim
        self.pred_horizon = pred_horizon
        self.num_train_timesteps = num_train_timesteps
        self._train_scheduler = make_scheduler("ddpm", num_train_timesteps)
        self._inference_schedulers: dict[tuple[str, int], Any] = {}

    def condition(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.encoder(obs))

    def loss(
        self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Per-sample epsilon MSE, (B,): the caller decides how to weight or mask rows."""
        expected = (self.pred_horizon, self.action_dim)
        if tuple(actions.shape[1:]) != expected:
            raise ConfigError(
                f"action batch has shape {tuple(actions.shape)}, expected (B, {expected[0]}, {expected[1]}); "
                "check policy.pred_horizon against the sampler's window"
            )
        cond = self.condition(obs)
        b = actions.shape[0]
        noise = randn(tuple(actions.shape), generator, actions.device)
        t_device = generator.device if generator is not None else actions.device
        timesteps = torch.randint(0, self.num_train_timesteps, (b,), generator=generator, device=t_device)
        timesteps = timesteps.to(actions.device)
        noisy = self._train_scheduler.add_noise(actions, noise, timesteps)
        pred = self.denoiser(noisy, timesteps, cond)
        return (pred.float() - noise).square().mean(dim=(1, 2))

    def _inference_scheduler(self, kind: str, num_inference_steps: int) -> Any:
        key = (kind, num_inference_steps)
        if key not in self._inference_schedulers:
            if not 1 <= num_inference_steps <= self.num_train_timesteps:
                raise ConfigError(
                    f"num_inference_steps must be in [1, {self.num_train_timesteps}], got {num_inference_steps}"
                )
            scheduler = make_scheduler(kind, self.num_train_timesteps)
            scheduler.set_timesteps(num_inference_steps)
            self._inference_schedulers[key] = scheduler
        return self._inference_schedulers[key]

    @torch.no_grad()
    def sample(
        self,
        obs: Mapping[str, torch.Tensor],
        num_candidates: int,
        num_inference_steps: int,
        scheduler: str = "ddim",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, K, Tp, A) normalised action chunks, K candidates per observation."""
        if num_candidates < 1:
            raise ConfigError(f"num_candidates must be >= 1, got {num_candidates}")
        sched = self._inference_scheduler(scheduler, num_inference_steps)
        cond = self.condition(obs)
        b = cond.shape[0]
        cond = cond.repeat_interleave(num_candidates, dim=0)
        x = randn((b * num_candidates, self.pred_horizon, self.action_dim), generator, cond.device)
        for t in sched.timesteps:
            eps = self.denoiser(x, t.to(cond.device), cond)
            x = sched.step(eps.float(), t, x, generator=generator).prev_sample
        return x.reshape(b, num_candidates, self.pred_horizon, self.action_dim)
