"""PolicyRuntime: load a checkpoint, keep the observation history, plan action chunks.

Sampling K candidate chunks in one batched pass and picking the best by min(Q1, Q2) happens in the
agent; this class owns what happens around it on a robot: history padding at the start of an
episode, normalisation with the checkpoint's statistics, the queue of planned actions, and a
seeded generator so the same checkpoint and observations give the same actions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_offrl.algos import Agent, build_agent
from robot_offrl.algos.diffusion import SCHEDULER_KINDS
from robot_offrl.algos.selection import SELECTION_MODES
from robot_offrl.checkpoint import CheckpointError, load_checkpoint
from robot_offrl.data import ActionSpace, KeySpec, NormStats, StoreSchema
from robot_offrl.data.stats import ACTIONS_KEY
from robot_offrl.device import autocast, autocast_dtype, cast_for_autocast_inference, select_device
from robot_offrl.errors import ConfigError, NonFiniteActionError
from robot_offrl.models.conv1d import CONV1D_MODES, set_conv_inference
from robot_offrl.models.obs_info import ObsInfo
from robot_offrl.runtime.observations import check_step, normalize_step
from robot_offrl.runtime.protocol import Camera, cameras_of

# Test-time options a checkpoint can be run with (PolicyRuntime's keywords besides seed), so one
# trained critic can be evaluated at another K, replanning interval or selection rule.
ACTING_OPTIONS = (
    "num_candidates", "num_inference_steps", "n_action_steps", "selection", "temperature", "scheduler",
    "prune_after", "prune_keep", "amp", "conv1d",
)
ACTING_AMP = ("off", "bf16", "auto")
# ``amp=auto`` acts in bf16 (where trainer.amp=auto would train in it) once a denoising step's matmul
# work, counted as policy parameters x candidates, outweighs the activation casts autocast adds. Measured
# on a CPU with AVX-512 BF16, DDIM 10, bf16 against fp32 (docs/benchmarks.md): 1.8 M x 1 1.26x (a loss),
# 14.6 M x 1 0.94x, 17.6 M U-Net x 1 0.51x, 63.5 M U-Net x 1 0.36x, 1.8 M x 32 0.79x.
BF16_ACTING_MIN_WORK = 16_000_000


def acting_autocast_dtype(amp: str, device: torch.device, policy_params: int, num_candidates: int) -> torch.dtype | None:
    """Autocast dtype for acting: ``auto`` as for training, but only for work large enough to gain."""
    if amp == "auto" and policy_params * num_candidates < BF16_ACTING_MIN_WORK:
        return None
    return autocast_dtype(amp, device)


def check_acting_options(options: Mapping[str, Any], shown: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Refuse bad acting options before any work starts, not when the first policy loads.

    A sweep or an experiment may train for hours before it builds its first PolicyRuntime, so the
    checks that need no checkpoint run up front; the limits that depend on one (pred_horizon, having
    a critic) are checked again when it loads. ``shown`` names options the way the user wrote them
    (a CLI flag), so the message points at what to fix.
    """
    label = {**{k: k for k in ACTING_OPTIONS}, **(shown or {})}
    unknown = sorted(set(options) - set(ACTING_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown acting option(s) {unknown}; known: {list(ACTING_OPTIONS)}")
    for key in ("num_candidates", "num_inference_steps", "n_action_steps"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{label[key]} must be an integer >= 1, got {value!r}")
    temperature = options.get("temperature")
    if temperature is not None and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ConfigError(f"{label['temperature']} must be > 0, got {temperature!r}")
    for key in ("prune_after", "prune_keep"):
        value = options.get(key)
        low = 0 if key == "prune_after" else 1
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"{label[key]} must be an integer >= {low}, got {value!r}")
    for key, choices in (("selection", SELECTION_MODES), ("scheduler", SCHEDULER_KINDS), ("amp", ACTING_AMP),
                         ("conv1d", CONV1D_MODES)):
        if options.get(key) is not None and options[key] not in choices:
            raise ConfigError(f"{label[key]} must be one of {list(choices)}, got {options[key]!r}")
    return dict(options)


def check_finite_state(agent: Agent, stats: NormStats, source: str) -> None:
    """Refuse NaN/inf weights or normalisation statistics, naming the first bad tensor.

    Either one makes every action NaN; found here it is a load error naming the culprit instead of
    a robot fed NaN commands (or a sweep of silent failures).
    """
    for name, tensor in agent.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: weight tensor '{name}' holds NaN/inf; this checkpoint cannot act")
    bad = stats.non_finite()
    if bad:
        raise CheckpointError(f"{source}: normalisation statistic '{bad[0]}' holds NaN/inf; this checkpoint cannot act")


class PolicyRuntime:
    """Acts with a trained agent. It takes the agent over: switched to eval and, with bf16 ``amp``, its
    matmul weights stored in bf16 (``cast_for_autocast_inference``), so never hand it one still training."""

    def __init__(
        self,
        agent: Agent,
        stats: NormStats,
        schema: StoreSchema,
        obs_keys: list[str],
        device: torch.device,
        num_candidates: int | None = None,
        num_inference_steps: int | None = None,
        n_action_steps: int | None = None,
        selection: str | None = None,
        temperature: float | None = None,
        seed: int = 0,
        scheduler: str | None = None,
        prune_after: int | None = None,
        prune_keep: int | None = None,
        amp: str | None = None,
        conv1d: str | None = None,
        source: str = "policy",
    ) -> None:
        check_finite_state(agent, stats, source)
        self.agent = agent.eval()
        self.stats = stats
        self.schema = schema
        self.device = device
        self.seed = seed
        self.obs_schema: list[KeySpec] = [schema.key(k) for k in obs_keys]
        policy_cfg = agent.config.policy
        sel = agent.config.algo.selection
        # Without a critic the checkpoint's own K means nothing (there is nothing to rank by): use 1.
        # An explicit K > 1 for such a checkpoint is refused below rather than silently ignored.
        default_k = sel.num_candidates if agent.has_critic else 1
        self.num_candidates = int(num_candidates if num_candidates is not None else default_k)
        self.num_inference_steps = int(num_inference_steps or policy_cfg.num_inference_steps)
        self.n_action_steps = int(n_action_steps or policy_cfg.n_action_steps)
        self.selection = selection or sel.mode
        self.temperature = float(temperature if temperature is not None else sel.temperature)
        self.scheduler = scheduler or policy_cfg.scheduler
        self.prune_after = int(prune_after if prune_after is not None else sel.prune_after)
        self.prune_keep = int(prune_keep if prune_keep is not None else sel.prune_keep)
        self.amp = amp or "auto"
        self.conv1d = conv1d or "auto"  # models/conv1d.py: the fp32 GEMM forward of short sequences
        check_acting_options({
            "num_candidates": self.num_candidates, "num_inference_steps": self.num_inference_steps,
            "selection": self.selection, "temperature": self.temperature, "scheduler": self.scheduler,
            "prune_after": self.prune_after, "prune_keep": self.prune_keep, "amp": self.amp,
            "conv1d": self.conv1d,
        })
        policy_params = sum(p.numel() for p in agent.ema_policy.parameters())
        self._amp_dtype = acting_autocast_dtype(self.amp, device, policy_params, self.num_candidates)
        if not 1 <= self.n_action_steps <= policy_cfg.pred_horizon:
            raise ConfigError(
                f"n_action_steps must be in [1, pred_horizon={policy_cfg.pred_horizon}], got {self.n_action_steps}"
            )
        scored = agent.config.critic.action_steps
        if self.num_candidates > 1 and agent.has_critic and self.n_action_steps < scored:
            raise ConfigError(
                f"n_action_steps={self.n_action_steps} is below the critic's action_steps={scored}: the "
                "critic would choose chunks by actions that are never executed; use n_action_steps >= "
                f"{scored} or K = 1"
            )
        if self.num_candidates > 1 and not agent.has_critic:
            raise ConfigError(
                f"num_candidates={self.num_candidates} needs a critic to score candidates, and this "
                f"checkpoint ({agent.config.algo.name}) has none; use num_candidates=1"
            )
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=self.obs_horizon)
        self._queue: deque[np.ndarray] = deque()
        self._generator = torch.Generator(device=device)
        self.reset()
        # Last, once every check passed: the runtime owns its agent now.
        set_conv_inference(self.agent, self.conv1d)
        if self._amp_dtype is not None:
            cast_for_autocast_inference(self.agent, self._amp_dtype)

    # -- loading ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str = "auto", **acting: Any) -> PolicyRuntime:
        """From a checkpoint folder or a run folder (its latest checkpoint); never unpickles.

        ``acting`` takes the keyword options of ``__init__`` (num_candidates, num_inference_steps,
        n_action_steps, selection, temperature, seed, scheduler, prune_after, prune_keep, amp, conv1d); None keeps
        the checkpoint's own.
        """
        ckpt = load_checkpoint(path)
        try:
            schema = StoreSchema.from_dict(ckpt.schema["store"])
            obs_info = ObsInfo.from_dict(ckpt.schema["obs_info"])
            obs_keys = list(ckpt.schema["obs_keys"])
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{ckpt.path}: schema.json is malformed ({err})") from err
        agent = build_agent(ckpt.config, obs_info, schema.action.dim)
        try:
            agent.load_state_dict(ckpt.model_state)
        except RuntimeError as err:
            raise CheckpointError(f"{ckpt.path}: weights do not match the config's networks: {err}") from err
        torch_device = select_device(device)
        return cls(
            agent.to(torch_device),
            NormStats.from_dict(ckpt.normalization),
            schema,
            obs_keys,
            torch_device,
            source=str(ckpt.path),
            **acting,
        )

    # -- facts users need ---------------------------------------------------------------------------
    @property
    def action_space(self) -> ActionSpace:
        return self.schema.action

    @property
    def cameras(self) -> tuple[Camera, ...]:
        """The cameras this checkpoint reads (its rgb observation keys)."""
        return cameras_of(self.obs_schema)

    @property
    def obs_horizon(self) -> int:
        return self.agent.obs_info.obs_horizon

    @property
    def control_rate_hz(self) -> float:
        return float(self.schema.control_rate_hz)

    @property
    def scored_actions(self) -> int:
        """Leading actions of each chunk that the candidate choice depends on (1 without selection).

        An executor that replans before this many actions have run would follow chunks chosen for
        motion it never performs; the ROS node refuses such checkpoints.
        """
        return self.agent.config.critic.action_steps if self.num_candidates > 1 else 1

    # -- acting -------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start of an episode: forget the history and any planned actions, re-seed sampling."""
        self._history.clear()
        self._queue.clear()
        self._generator.manual_seed(self.seed)

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """One action for this step; replans (n_action_steps ahead) when the queue runs out."""
        self._push(obs)
        if not self._queue:
            self._queue.extend(self._plan_from_history())
        return self._queue.popleft()

    def observe(self, obs: Mapping[str, Any]) -> None:
        """Add one control step's observation to the history without planning.

        The policy was trained on consecutive steps (obs_horizon of them, one control period apart); an
        executor that runs a chunk open-loop still calls this every period, so the next plan sees the
        same spacing as ``act`` in a direct sweep, not frames a chunk apart.
        """
        self._push(obs)

    def plan(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Push ``obs`` and plan now: (n_action_steps, A) actions in the action space's units."""
        self._push(obs)
        chunk = self._plan_from_history()
        self._queue = deque(chunk)
        return chunk

    def _push(self, obs: Mapping[str, Any]) -> None:
        step = normalize_step(check_step(obs, self.obs_schema), self.obs_schema, self.stats)
        self._history.append(step)

    def _obs_tensors(self) -> dict[str, torch.Tensor]:
        """(1, To, ...) per key; before To steps exist the oldest step is repeated, as in training."""
        steps = list(self._history)
        steps = [steps[0]] * (self.obs_horizon - len(steps)) + steps
        return {
            spec.name: torch.from_numpy(np.stack([s[spec.name] for s in steps])[None]).to(self.device)
            for spec in self.obs_schema
        }

    @torch.no_grad()
    def _plan_from_history(self) -> np.ndarray:
        with autocast(self.device, self._amp_dtype):
            chunk = self.agent.select(
                self._obs_tensors(),
                num_candidates=self.num_candidates,
                num_inference_steps=self.num_inference_steps,
                selection=self.selection,
                temperature=self.temperature,
                generator=self._generator,
                scheduler=self.scheduler,
                prune_after=self.prune_after,
                prune_keep=self.prune_keep,
            )[0, : self.n_action_steps]
        actions = self.stats.unnormalize(ACTIONS_KEY, chunk.float().cpu().numpy()).astype(np.float32)
        if not np.isfinite(actions).all():
            step, dim = (int(i) for i in np.argwhere(~np.isfinite(actions))[0])
            raise NonFiniteActionError(
                f"the policy produced a non-finite action (step {step} of the chunk, {self.action_space.names[dim]}); "
                "nothing was returned; hold the robot"
            )
        return actions

    def describe(self) -> dict[str, Any]:
        return {
            "algo": self.agent.config.algo.name,
            "obs_keys": [s.name for s in self.obs_schema],
            "action_names": list(self.action_space.names),
            "num_candidates": self.num_candidates,
            "num_inference_steps": self.num_inference_steps,
            "scheduler": self.scheduler,
            "prune_after": self.prune_after,
            "prune_keep": self.prune_keep,
            "amp": self.amp,
            "acting_dtype": str(self._amp_dtype or torch.float32).removeprefix("torch."),
            "conv1d": self.conv1d,
            "n_action_steps": self.n_action_steps,
            "selection": self.selection,
            "device": str(self.device),
        }
