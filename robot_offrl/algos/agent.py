"""The one agent behind BC, IDQL and RISE (RISE.md "Baselines": a config choice, not a code path).

Networks, all in one ``nn.Module`` so ``state_dict()`` is a flat dict of plain tensors with
prefixed names (``policy.*``, ``ema_policy.*``, ``critic.*``, ``critic_target.*``):
  - policy:        encoder -> Lipschitz head (algo.lipschitz_form) -> denoiser (epsilon loss on all rows)
  - ema_policy:    its EMA copy, used for acting
  - critic:        own encoder, Q1, Q2, V (trained on non-augmented rows only; not at all on the
                   augmented-only steps of the alternate schedule, ``update_critic=False``)
  - critic_target: Polyak copy of the critic's encoder + Q1 + Q2

Everything here works in normalised units: observations and actions as the sampler hands them
over ([-1, 1] low-dim, uint8 images). De-normalising actions is the runtime's job.

The critic scores the first ``critic.action_steps`` actions of the chunk (default 1: the action
executed at t), flattened, in training and in selection alike (``critic_actions``); with n > 1 its TD
target is the n-step one. Episode ends are absorbing by default (done = 0, the last step bootstraps from
itself; contracts "Episode ends"), so along an expert trajectory values rise toward 1 / (1 - gamma).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from robot_offrl.algos.averaging import ema_decay, soft_update
from robot_offrl.algos.config import AgentConfig
from robot_offrl.algos.diffusion import DiffusionPolicy, Pruning
from robot_offrl.algos.iql import masked_mean, n_step_td_target, q_loss, value_loss
from robot_offrl.algos.selection import check_selection, pick
from robot_offrl.errors import ConfigError
from robot_offrl.models.critics import Critic, PrecomputedFeatures
from robot_offrl.models.denoisers import ConditionalUnet1D, MLPResNetDenoiser
from robot_offrl.models.encoders import ObsEncoder
from robot_offrl.models.lipschitz import make_lipschitz_head
from robot_offrl.models.obs_info import ObsInfo

Obs = Mapping[str, torch.Tensor]


def _encoder(obs_info: ObsInfo, config: AgentConfig) -> ObsEncoder:
    return ObsEncoder(obs_info, config.encoder)


def _denoiser(config: AgentConfig, action_dim: int, cond_dim: int) -> nn.Module:
    p = config.policy
    if p.denoiser == "unet":
        return ConditionalUnet1D(action_dim, cond_dim, p.down_dims, p.kernel_size, p.n_groups, p.timestep_embed_dim)
    return MLPResNetDenoiser(action_dim, p.pred_horizon, cond_dim, p.hidden_dim, p.num_blocks, p.timestep_embed_dim)


def _frozen(module: nn.Module) -> nn.Module:
    copied = copy.deepcopy(module)
    copied.requires_grad_(False)
    return copied


class Agent(nn.Module):
    def __init__(self, config: AgentConfig, obs_info: ObsInfo, action_dim: int) -> None:
        super().__init__()
        if isinstance(action_dim, bool) or not isinstance(action_dim, int) or action_dim < 1:
            raise ConfigError(f"action_dim must be a positive integer, got {action_dim!r}")
        p = config.policy
        if (obs_info.obs_horizon, obs_info.pred_horizon) != (p.obs_horizon, p.pred_horizon):
            raise ConfigError(
                f"obs_info horizons (obs {obs_info.obs_horizon}, pred {obs_info.pred_horizon}) disagree with "
                f"policy.obs_horizon={p.obs_horizon}, policy.pred_horizon={p.pred_horizon}"
            )
        self.config = config
        self.obs_info = obs_info
        self.action_dim = action_dim
        encoder = _encoder(obs_info, config)
        a = config.algo
        head = make_lipschitz_head(
            a.lipschitz_form, encoder.output_dim, p.cond_dim, a.lipschitz_hidden, a.lipschitz_method, a.lipschitz_max
        )
        self.policy = DiffusionPolicy(
            encoder, head, _denoiser(config, action_dim, head.output_dim), action_dim, p.pred_horizon,
            p.num_train_timesteps,
        )
        self.ema_policy = _frozen(self.policy)
        self.critic: Critic | None = None
        self.critic_target: nn.Module | None = None
        if config.algo.use_critic:
            c = config.critic
            scored_dim = action_dim * c.action_steps
            critic_encoder = (
                PrecomputedFeatures(self.policy.encoder.output_dim) if c.features == "policy_ema"
                else _encoder(obs_info, config)
            )
            self.critic = Critic(critic_encoder, scored_dim, c.hidden_dim, c.num_layers)
            self.critic_target = _frozen(self.critic.twin)

    # -- what the trainer uses -------------------------------------------------------------------
    @property
    def has_critic(self) -> bool:
        return self.critic is not None

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"policy": [p for p in self.policy.parameters() if p.requires_grad]}
        if self.critic is not None:
            groups["critic"] = [p for p in self.critic.parameters() if p.requires_grad]
        return groups

    def train(self, mode: bool = True) -> Agent:
        """Slow copies stay in eval mode: they are read for acting and targets, never trained."""
        super().train(mode)
        self.ema_policy.eval()
        if self.critic_target is not None:
            self.critic_target.eval()
        return self

    def forward(
        self, batch: Mapping[str, Any], step: int = 0, update_critic: bool = True
    ) -> dict[str, torch.Tensor]:
        """So DDP can wrap the agent: ``ddp(batch, step, update_critic)`` is ``compute_losses``."""
        return self.compute_losses(batch, step, update_critic)

    def compute_losses(
        self, batch: Mapping[str, Any], step: int = 0, update_critic: bool = True
    ) -> dict[str, torch.Tensor]:
        """One differentiable ``loss`` (policy + Lipschitz + critic) and detached scalars to log.

        The policy loss never touches critic parameters and the critic losses detach their
        targets, so one optimiser with two parameter groups trains both from this sum.
        Augmented rows are masked out of V and Q. ``update_critic=False`` (the augmented-only
        steps of the alternate schedule) leaves the critic out of the graph altogether, so its
        gradients stay None and the optimiser moves none of its weights (AdamW skips them).
        """
        obs, actions = batch["obs"], batch["actions"]
        b = actions.shape[0]
        augmented = batch.get("augmented")
        augmented = (
            torch.zeros(b, dtype=torch.bool, device=actions.device)
            if augmented is None
            else augmented.to(actions.device).bool()
        )
        policy_loss = self.policy.loss(obs, actions).mean()
        lip_weight = self.config.algo.lipschitz_weight
        if lip_weight > 0:
            sigma = self.policy.head.spectral_norm()
            lipschitz = self.policy.head.penalty(lip_weight, sigma)  # the form's own term (models/lipschitz.py)
        else:  # still logged, so runs with and without the penalty can be compared
            with torch.no_grad():
                sigma = self.policy.head.spectral_norm()
            lipschitz = sigma.new_zeros(())
        loss = policy_loss + lipschitz
        out: dict[str, torch.Tensor] = {
            "policy_loss": policy_loss.detach(),
            "lipschitz_penalty": lipschitz.detach(),
            "lipschitz_sigma": sigma.detach(),
            "augmented_fraction": augmented.float().mean(),
        }
        if self.critic is not None and update_critic:
            critic_out = self._critic_losses(batch, ~augmented)
            loss = loss + critic_out.pop("critic_loss")
            out.update(critic_out)
        out["loss"] = loss
        return out

    def _critic_losses(self, batch: Mapping[str, Any], td_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        assert self.critic is not None and self.critic_target is not None
        c = self.config.critic
        obs, next_obs = batch["obs"], batch["next_obs"]
        scored = self.critic_actions(batch["actions"])
        reward = batch["reward"].float().to(scored.device)
        done = batch["done"].float().to(scored.device)
        reward_steps = batch.get("reward_steps")
        if reward_steps is None:
            if c.action_steps > 1:  # a silent default would train toward a wrong, one-reward target
                raise ConfigError(
                    f"critic.action_steps={c.action_steps} needs batch['reward_steps'] (the sampler's "
                    "WindowDataset(td_steps=...) provides it; docs/contracts.md)"
                )
            reward_steps = torch.ones_like(reward)
        reward_steps = reward_steps.float().to(scored.device)
        obs, next_obs = self._critic_views(obs, next_obs)
        features = self.critic.twin.features(obs)
        with torch.no_grad():
            tq1, tq2 = self.critic_target(obs, scored)
            target_q = torch.minimum(tq1, tq2).float()
            next_v = self.critic.value(self.critic.twin.features(next_obs)).float()
            backup = n_step_td_target(reward, reward_steps, done, next_v, c.gamma, c.action_steps)
        v = self.critic.value(features).float()
        q1, q2 = self.critic.twin.from_features(features, scored)
        v_loss = value_loss(target_q, v, c.expectile, td_mask)
        td_loss = q_loss(q1.float(), q2.float(), backup, td_mask)
        return {
            "critic_loss": v_loss + td_loss,
            "v_loss": v_loss.detach(),
            "q_loss": td_loss.detach(),
            "q_mean": masked_mean(q1.detach().float(), td_mask),
            "v_mean": masked_mean(v.detach(), td_mask),
            "target_q_mean": masked_mean(target_q, td_mask),
        }

    @property
    def critic_reads_policy(self) -> bool:
        return self.critic is not None and self.config.critic.features == "policy_ema"

    def _critic_views(self, obs: Obs, next_obs: Obs) -> tuple[Any, Any]:
        """What the critic reads for obs and next_obs: the windows themselves, or (critic.features =
        policy_ema) the EMA policy encoder's features of both, from one batched pass without gradient."""
        if not self.critic_reads_policy:
            return obs, next_obs
        b = next(iter(obs.values())).shape[0]
        with torch.no_grad():
            both = self.ema_policy.encoder({k: torch.cat([obs[k], next_obs[k]]) for k in obs})
        return both[:b], both[b:]

    def after_optimizer_step(self, step: int, critic_updated: bool = True) -> None:
        """Polyak-update the critic target and the policy EMA (call once per optimiser step)."""
        if self.critic is not None and self.critic_target is not None and critic_updated:
            soft_update(self.critic_target, self.critic.twin, self.config.critic.tau)
        e = self.config.ema
        decay = ema_decay(step, e.power, e.max_decay, e.min_decay, e.inv_gamma, e.update_after_step)
        soft_update(self.ema_policy, self.policy, 1.0 - decay)

    # -- what the runtime uses --------------------------------------------------------------------
    @torch.no_grad()
    def sample_chunks(
        self,
        obs: Obs,
        num_candidates: int,
        num_inference_steps: int | None = None,
        use_ema: bool = True,
        generator: torch.Generator | None = None,
        scheduler: str | None = None,
        pruning: Pruning | None = None,
        encoded: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, K, Tp, A) normalised candidate chunks; deterministic given ``generator``.

        ``encoded``: the sampling policy's encoder output for ``obs`` when the caller already has it.
        """
        policy = self.ema_policy if use_ema else self.policy
        was_training = policy.training
        policy.eval()
        try:
            steps = num_inference_steps or self.config.policy.num_inference_steps
            return policy.sample(
                obs, num_candidates, steps, scheduler or self.config.policy.scheduler, generator, pruning, encoded
            )
        finally:
            policy.train(was_training)

    def critic_actions(self, chunks: torch.Tensor) -> torch.Tensor:
        """The part of (..., T, A) action chunks that Q scores: the first action_steps, flattened.

        The one place that decides it, so training targets and candidate scoring index the same actions.
        """
        n = self.config.critic.action_steps
        if chunks.dim() < 2 or chunks.shape[-1] != self.action_dim or chunks.shape[-2] < n:
            raise ConfigError(
                f"action chunks must be (..., T >= {n}, {self.action_dim}) for a critic scoring {n} "
                f"action(s), got {tuple(chunks.shape)}"
            )
        return chunks[..., :n, :].flatten(-2)

    @torch.no_grad()
    def score(self, obs: Obs, chunks: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """min(Q1, Q2) of (B, K, T, A) candidate chunks -> (B, K). BC has no critic: a clear error, not zeros."""
        if self.critic is None:
            raise ConfigError(
                f"algo '{self.config.algo.name}' trains no critic, so it cannot score actions; "
                "use K = 1 or train with algo=idql / algo=rise"
            )
        if chunks.dim() != 4:
            raise ConfigError(f"candidate chunks must be (B, K, T, {self.action_dim}), got {tuple(chunks.shape)}")
        scored = self.critic_actions(chunks)
        if features is None and self.critic_reads_policy:
            features = self._critic_features(obs)
        was_training = self.critic.training
        self.critic.eval()
        try:
            return self.critic.min_q(obs, scored, features).float()
        finally:
            self.critic.train(was_training)

    @torch.no_grad()
    def _critic_features(self, obs: Obs) -> torch.Tensor:
        """The critic encoder's features in eval mode (centre crop), computed once per selection.

        With critic.features = policy_ema they are the EMA policy encoder's, which sampling reuses.
        """
        assert self.critic is not None
        if self.critic_reads_policy:
            return self.ema_policy.encoder(obs)
        was_training = self.critic.training
        self.critic.eval()
        try:
            return self.critic.twin.features(obs)
        finally:
            self.critic.train(was_training)

    @torch.no_grad()
    def select(
        self,
        obs: Obs,
        num_candidates: int | None = None,
        num_inference_steps: int | None = None,
        selection: str | None = None,
        temperature: float | None = None,
        generator: torch.Generator | None = None,
        scheduler: str | None = None,
        prune_after: int | None = None,
        prune_keep: int | None = None,
    ) -> torch.Tensor:
        """(B, Tp, A): the best of K chunks by min(Q1, Q2) of their scored actions (``critic_actions``).

        K = 1 or no critic is plain Diffusion Policy. ``softmax`` samples a chunk with
        probability proportional to exp(Q / temperature) instead of taking the argmax.
        ``prune_after`` > 0 ranks all K by Q on their predicted clean chunks after that many steps and
        finishes only the best ``prune_keep`` (``algo.selection.prune_*`` by default; 0 = off).
        """
        sel = self.config.algo.selection
        k = sel.num_candidates if num_candidates is None else num_candidates
        mode = selection or sel.mode
        temp = sel.temperature if temperature is None else temperature
        check_selection(mode, temp)
        if self.critic is None:
            k = 1
        pruning = None
        after = sel.prune_after if prune_after is None else prune_after
        keep = sel.prune_keep if prune_keep is None else prune_keep
        if after < 0 or keep < 1:
            raise ConfigError(f"prune_after must be >= 0 and prune_keep >= 1, got {after} and {keep}")
        features = self._critic_features(obs) if k > 1 else None  # once per selection
        if k > 1 and after > 0 and keep < k:
            pruning = Pruning(after, keep, lambda x0: self.score(obs, x0, features))
        chunks = self.sample_chunks(
            obs, k, num_inference_steps, use_ema=True, generator=generator, scheduler=scheduler, pruning=pruning,
            encoded=features if self.critic_reads_policy else None,
        )
        if chunks.shape[1] == 1:
            return chunks[:, 0]
        index = pick(self.score(obs, chunks, features), mode, temp, generator)
        return chunks[torch.arange(chunks.shape[0], device=chunks.device), index]


def build_agent(cfg: Any, obs_info: ObsInfo, action_dim: int) -> Agent:
    """The agent for ``cfg`` (resolved Hydra config or dict with algo/policy/critic/encoder/trainer)."""
    return Agent(AgentConfig.from_cfg(cfg), obs_info, action_dim)
