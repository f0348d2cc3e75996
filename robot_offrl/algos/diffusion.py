"""The diffusion behaviour policy: encoder -> Lipschitz head -> denoiser, its loss and its sampler.

Training is the plain epsilon-prediction MSE over the whole action chunk (DDPM, 100 steps,
squared-cosine betas). Sampling draws K candidate chunks per observation in ONE batch of B*K
rows per denoising step (the observation is encoded once and repeated), which is what makes
K = 32..128 candidates affordable at replanning time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robot_offrl.errors import ConfigError
from robot_offrl.models.encoders import ObsEncoder
from robot_offrl.models.lipschitz import LipschitzHead, SpectralMLPHead

# Samplers for acting (policy.scheduler): ddpm runs num_train_timesteps steps; "dpmsolver" (DPM-Solver++ 2M)
# and "unipc" are multistep solvers meant for 3-5 steps.
SCHEDULER_KINDS = ("ddim", "ddpm", "dpmsolver", "unipc")
# Multistep solvers keep the last model outputs (and UniPC the last sample) between steps: state that
# pruning must shrink with the candidates and that set_timesteps resets before every chunk.
_SOLVER_STATE = ("model_outputs", "last_sample")


def make_scheduler(kind: str, num_train_timesteps: int) -> Any:
    """A diffusers scheduler with the Diffusion Policy settings (squaredcos_cap_v2, x0 clipped to [-1, 1]).

    The multistep solvers clip x0 through diffusers' thresholding with ``sample_max_value=1``, which
    pins the dynamic threshold to 1: the same clip as DDIM's ``clip_sample``.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    common: dict[str, Any] = {
        "num_train_timesteps": num_train_timesteps,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "epsilon",
    }
    if kind == "ddpm":
        return DDPMScheduler(variance_type="fixed_small", clip_sample=True, **common)
    if kind == "ddim":
        return DDIMScheduler(set_alpha_to_one=True, steps_offset=0, clip_sample=True, **common)
    clip = {"thresholding": True, "sample_max_value": 1.0}
    if kind == "dpmsolver":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **clip, **common)
    if kind == "unipc":
        return UniPCMultistepScheduler(solver_order=2, **clip, **common)
    raise ConfigError(f"policy.scheduler must be one of {', '.join(SCHEDULER_KINDS)}, got {kind!r}")


@dataclass(frozen=True)
class Pruning:
    """Cut K candidates to ``keep`` after ``after_steps`` denoising steps, ranked by ``score``.

    ``score`` maps the predicted clean chunks (B, K, Tp, A) to (B, K); the survivors finish denoising,
    so the remaining steps run on B * keep rows instead of B * K.
    """

    after_steps: int
    keep: int
    score: Callable[[torch.Tensor], torch.Tensor]


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

    def condition(self, obs: Mapping[str, torch.Tensor], encoded: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(obs) if encoded is None else encoded)

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
            self._inference_schedulers[key] = make_scheduler(kind, self.num_train_timesteps)
        scheduler = self._inference_schedulers[key]
        scheduler.set_timesteps(num_inference_steps)  # also clears a multistep solver's history
        return scheduler

    def _predicted_x0(self, sched: Any, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean chunk the current noise estimate implies, clipped like the samplers clip it."""
        alpha_bar = sched.alphas_cumprod[int(t)].to(x.device, torch.float32)
        return ((x - (1.0 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()).clamp(-1.0, 1.0)

    @torch.no_grad()
    def sample(
        self,
        obs: Mapping[str, torch.Tensor],
        num_candidates: int,
        num_inference_steps: int,
        scheduler: str = "ddim",
        generator: torch.Generator | None = None,
        pruning: Pruning | None = None,
        encoded: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, K, Tp, A) normalised action chunks, K candidates per observation (K = ``pruning.keep`` if pruned).

        ``encoded`` is this policy's encoder output for ``obs``, when the caller has already computed it.
        """
        if num_candidates < 1:
            raise ConfigError(f"num_candidates must be >= 1, got {num_candidates}")
        sched = self._inference_scheduler(scheduler, num_inference_steps)
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}
        cond = self.condition(obs, encoded)
        b = cond.shape[0]
        k = num_candidates
        cond = cond.repeat_interleave(k, dim=0)
        x = randn((b * k, self.pred_horizon, self.action_dim), generator, cond.device)
        prune = pruning is not None and pruning.keep < k and 0 < pruning.after_steps < len(sched.timesteps)
        for i, t in enumerate(sched.timesteps):
            eps = self.denoiser(x, t.to(cond.device), cond).float()
            if prune and i == pruning.after_steps:  # type: ignore[union-attr]
                x0 = self._predicted_x0(sched, x, eps, t).reshape(b, k, self.pred_horizon, self.action_dim)
                keep = pruning.score(x0).topk(pruning.keep, dim=1).indices  # type: ignore[union-attr]
                rows = (keep + torch.arange(b, device=keep.device)[:, None] * k).reshape(-1)
                x, eps, cond = x[rows], eps[rows], cond[rows]
                for name in _SOLVER_STATE:
                    _gather_state(sched, name, rows)
                k = pruning.keep  # type: ignore[union-attr]
            x = sched.step(eps, t, x, **step_kwargs).prev_sample
        return x.reshape(b, k, self.pred_horizon, self.action_dim)


def _gather_state(sched: Any, name: str, rows: torch.Tensor) -> None:
    """Keep only the surviving candidates' rows of a multistep solver's remembered tensors."""
    value = getattr(sched, name, None)
    if isinstance(value, torch.Tensor):
        setattr(sched, name, value[rows])
    elif isinstance(value, list):
        setattr(sched, name, [v[rows] if isinstance(v, torch.Tensor) else v for v in value])
