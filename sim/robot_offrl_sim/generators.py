"""Episode generators: the scripted expert and the non-expert kinds (none of those flagged expert).

RISE needs cheap data that covers states the experts never visit and leads back toward them. The
benchmark kinds are the cheap data a lab really has: `reset_play` (the object pushed, slid or carried
back into the expert's start region, arm home, never the task), `failed_smooth` (attempts with drift or a
fumbled grasp), `partial` (attempts stopped early) and `policy_rollout` (an earlier checkpoint run from
the wide region). `play`, `failed` (white noise, std 0.5-0.9) and `suboptimal` are kept as a stress
test (datasets/README.md). Every generator is seeded per episode, so a recipe regenerates the same
dataset.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl.runtime.protocol import Policy
from robot_offrl_sim.attempts import (
    EARLY_CLOSE_HEIGHT,
    FUMBLES,
    MAX_SMOOTH_STD,
    FumbledGrasp,
    SmoothNoisePolicy,
)
from robot_offrl_sim.experts import make_expert
from robot_offrl_sim.experts.base import CLOSE, OPEN, Obs, ScriptedExpert, servo
from robot_offrl_sim.reset_play import ResetPlayPolicy
from robot_offrl_sim.spec import TaskSpec

KINDS = ("expert", "play", "failed", "partial", "suboptimal", "reset_play", "failed_smooth", "policy_rollout")
# A failed attempt is stopped after this many times the expert's typical length, as an operator would.
ATTEMPT_LENGTH = 2.0


def _rng(seed: int, salt: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(salt.encode())])


class NoisyPolicy:
    """Gaussian action noise on top of another policy (failed demos: heavy noise)."""

    def __init__(self, base: Policy, std: float, rng: np.random.Generator) -> None:
        self.base, self.std, self.rng = base, float(std), rng

    def reset(self) -> None:
        self.base.reset()

    def act(self, obs: Obs) -> np.ndarray:
        a = np.asarray(self.base.act(obs), dtype=np.float64)
        noise = self.rng.normal(0.0, self.std, size=a.shape)
        noise[6] = 0.0  # keep the gripper decision; a flickering gripper is not a plausible failure
        return np.clip(a + noise, -1.0, 1.0).astype(np.float32)


class EarlyRelease:
    """Opens the gripper too early: a dropped object.

    Tasks that carry the object (can, square) drop it `delay` steps into the carry; Lift succeeds as
    soon as the cube rises 4 cm, so there the fingers open `delay` steps into closing (a fumbled grasp).
    """

    def __init__(self, base: ScriptedExpert, delay: int) -> None:
        self.base, self.delay = base, int(delay)
        self.trigger = "carry" if "carry" in base.phases else "grasp"
        self.count = 0

    def reset(self) -> None:
        self.base.reset()
        self.count = 0

    def act(self, obs: Obs) -> np.ndarray:
        a = np.asarray(self.base.act(obs), dtype=np.float32)
        phases = self.base.phases
        if self.base.phase != "detour" and phases.index(self.base.phase) >= phases.index(self.trigger):
            self.count += 1
        if self.count > self.delay:
            a[6] = OPEN
        return a


@dataclass
class _Stage:
    """Servo to `target(obs)` with a gripper command; `expert=True` hands control to the scripted expert
    (approach, grasp, lift) until it has lifted for a few steps."""

    target: np.ndarray | None
    gripper: float
    max_steps: int
    tol: float = 0.015
    expert: bool = False


class PlayPolicy:
    """Goal-directed play: reach, push and grasp attempts toward random targets around the object.

    Half of the push/carry targets are the narrow region's centre, so play data contains paths from
    the wide region back into the expert's region (what stitching needs).
    """

    def __init__(self, spec: TaskSpec, rng: np.random.Generator) -> None:
        self.spec, self.rng = spec, rng
        self.expert = make_expert(spec)
        self.reset()

    def reset(self) -> None:
        self.stages: list[_Stage] = []
        self.primitives: list[str] = []
        self.stage_steps = 0
        self.lift_steps = 0

    def _obj(self, obs: Obs) -> np.ndarray:
        i = self.spec.object_pos_index
        return np.asarray(obs["object"][i : i + 3], dtype=np.float64)

    def _goal_xy(self) -> np.ndarray:
        if self.rng.random() < 0.5:
            reg = self.spec.narrow
            x, y = sum(reg.x) / 2.0, sum(reg.y) / 2.0
        else:
            x, y, _ = self.spec.region("wide").sample(self.rng)
        return np.array([self.spec.origin[0] + x, self.spec.origin[1] + y])

    def _plan(self, obs: Obs) -> None:
        kind = str(self.rng.choice(["reach", "push", "grasp"], p=[0.3, 0.35, 0.35]))
        self.primitives.append(kind)
        obj = self._obj(obs)
        if kind == "reach":
            off = np.array([*self.rng.uniform(-0.15, 0.15, 2), self.rng.uniform(0.02, 0.2)])
            grip = float(self.rng.choice([OPEN, CLOSE]))
            self.stages = [_Stage(obj + off, grip, 40)]
        elif kind == "push":
            goal = self._goal_xy()
            d = goal - obj[:2]
            d = d / (np.linalg.norm(d) + 1e-9)
            pre = np.array([*(obj[:2] - 0.07 * d), obj[2] + 0.08])
            low = np.array([*(obj[:2] - 0.07 * d), obj[2]])
            end = np.array([*(goal - 0.03 * d), obj[2]])
            self.stages = [
                _Stage(pre, CLOSE, 40),
                _Stage(low, CLOSE, 25),
                _Stage(end, CLOSE, 50, tol=0.02),
                _Stage(end + np.array([0, 0, 0.1]), CLOSE, 20),
            ]
        else:
            self.expert.reset()
            goal = self._goal_xy()
            carry = np.array([goal[0], goal[1], obj[2] + 0.1])
            self.stages = [
                _Stage(None, CLOSE, 120, expert=True),
                _Stage(carry, CLOSE, 50, tol=0.02),
                _Stage(carry, OPEN, 8, tol=0.0),
                _Stage(carry + np.array([0, 0, 0.08]), OPEN, 15),
            ]
        self.stage_steps = 0
        self.lift_steps = 0

    def _next_stage(self) -> None:
        self.stages.pop(0)
        self.stage_steps = 0

    def act(self, obs: Obs) -> np.ndarray:
        if not self.stages:
            self._plan(obs)
        stage = self.stages[0]
        self.stage_steps += 1
        if stage.expert:
            a = self.expert.act(obs)
            if self.expert.phase not in ("approach", "descend", "grasp"):
                self.lift_steps += 1
            if self.lift_steps > 8:
                self._next_stage()
            elif self.stage_steps >= stage.max_steps:
                self.stages = []  # the grasp never happened: plan something else
            return np.asarray(a, dtype=np.float32)
        target = stage.target
        assert target is not None
        a = servo(obs, target, self.expert.gripper_yaw(obs), stage.gripper, max_action=0.8)
        reached = float(np.linalg.norm(obs["robot0_eef_pos"] - target)) < stage.tol
        if reached or self.stage_steps >= stage.max_steps:
            self._next_stage()
        return a.astype(np.float32)


@dataclass
class EpisodePlan:
    """How to run one generated episode and how to flag it in the store."""

    kind: str
    policy: Policy
    horizon: int
    stop_on_success: bool
    post_success_steps: int
    expert: bool
    source: str
    details: dict[str, Any] = field(default_factory=dict)
    never_succeeds: bool = False  # collect discards (and replaces) an episode of this plan that succeeded
    # Source to record instead when the episode did succeed (a drifting attempt that still got there is
    # a suboptimal demonstration, not a failure); None keeps `source` whatever happened.
    source_if_success: str | None = None

    def source_for(self, success: bool) -> str:
        return self.source_if_success if success and self.source_if_success else self.source


class SeededRollout:
    """A checkpoint's PolicyRuntime with its sampling seeded per episode (`reseed` before `reset`).

    The rollout runner calls `reseed(seed)`; PolicyRuntime re-seeds its generator from `seed` on each
    reset, so episode e of a recipe samples the same action chunks on every rebuild.
    """

    def __init__(self, runtime: Any, checkpoint: str) -> None:
        self.runtime, self.checkpoint = runtime, checkpoint

    def reseed(self, seed: int) -> None:
        self.runtime.seed = int(seed) % (2**63)

    def reset(self) -> None:
        self.runtime.reset()

    def act(self, obs: Obs) -> np.ndarray:
        return np.asarray(self.runtime.act(obs), dtype=np.float32)


def load_rollout_policy(
    checkpoint: str, obs_shapes: dict[str, tuple[int, ...]], acting: Mapping[str, Any] | None = None
) -> SeededRollout:
    """Load a checkpoint for `policy_rollout` episodes and check it can read this env's observations."""
    from pathlib import Path

    from robot_offrl.runtime import PolicyRuntime

    if not Path(checkpoint).exists():
        raise ConfigError(f"policy_rollout checkpoint {checkpoint} not found (a run or checkpoint folder)")
    runtime = PolicyRuntime.load(checkpoint, **(acting or {}))
    for key in runtime.obs_schema:
        if key.name not in obs_shapes:
            raise ConfigError(
                f"checkpoint {checkpoint} reads observation {key.name!r}, which this env does not make "
                f"(it makes {sorted(obs_shapes)}); use the task/cameras it was trained on"
            )
        if tuple(key.shape) != tuple(obs_shapes[key.name]):
            raise ConfigError(
                f"checkpoint {checkpoint} expects {key.name!r} of shape {tuple(key.shape)}, this env makes "
                f"{tuple(obs_shapes[key.name])}: it was trained on another task config"
            )
    return SeededRollout(runtime, str(checkpoint))


def _failed_smooth(spec: TaskSpec, rng: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
    """Half drift (OU noise, std 0.1-0.2, 10-25 step correlation), half a fumbled grasp."""
    if rng.random() < 0.5:
        std, tau = float(rng.uniform(0.1, MAX_SMOOTH_STD)), float(rng.uniform(10.0, 25.0))
        policy: Policy = SmoothNoisePolicy(make_expert(spec), std, tau, rng)
        return policy, {"failure": "smooth_noise", "noise_std": round(std, 4), "noise_tau": round(tau, 3)}
    mode = str(rng.choice(list(FUMBLES)))
    amount = {
        "early_close": float(rng.uniform(*EARLY_CLOSE_HEIGHT[spec.expert or spec.name])),  # metres above the grasp
        "late_close": float(rng.integers(3, 12)),  # steps into the lift
        "miss": float(rng.uniform(0.025, 0.04)),  # metres beside the object
    }[mode]
    policy = FumbledGrasp(make_expert(spec), mode, amount, rng)
    return policy, {"failure": mode, "amount": round(amount, 4)}


def plan_episode(
    kind: str, spec: TaskSpec, seed: int, horizon: int | None = None, policy: Policy | None = None
) -> EpisodePlan:
    """The policy and flags for one episode of `kind`, fully determined by (kind, task, seed).

    `policy` is the loaded checkpoint for `policy_rollout` (see load_rollout_policy) and unused otherwise.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown episode kind {kind!r}; use one of {list(KINDS)}")
    horizon = int(horizon or spec.horizon)
    rng = _rng(seed, f"{spec.name}/{kind}")
    if kind == "reset_play":
        details: dict[str, Any] = {}
        reset = ResetPlayPolicy(spec, rng, report=details, horizon=horizon)
        return EpisodePlan(kind, reset, horizon, True, 0, False, "play", details, never_succeeds=True)
    if kind == "failed_smooth":
        attempt, details = _failed_smooth(spec, rng)
        length = min(horizon, int(ATTEMPT_LENGTH * spec.expert_steps))
        return EpisodePlan(kind, attempt, length, True, 10, False, "failed", details, source_if_success="suboptimal")
    if kind == "policy_rollout":
        if policy is None:
            raise ConfigError("kind policy_rollout needs a checkpoint (recipe part field `checkpoint:`)")
        ckpt = getattr(policy, "checkpoint", None)
        return EpisodePlan(kind, policy, horizon, True, 10, False, "policy_rollout", {"checkpoint": ckpt})
    if kind == "expert":
        return EpisodePlan(kind, make_expert(spec), horizon, True, 10, True, "scripted")
    if kind == "play":
        return EpisodePlan(kind, PlayPolicy(spec, rng), horizon, False, 0, False, "play")
    if kind == "failed":
        if rng.random() < 0.5:
            std = float(rng.uniform(0.5, 0.9))
            policy: Policy = NoisyPolicy(make_expert(spec), std, rng)
            details = {"failure": "action_noise", "noise_std": round(std, 4)}
        else:
            delay = int(rng.integers(2, 10))
            policy = EarlyRelease(make_expert(spec), delay)
            details = {"failure": "early_release", "release_after_steps": delay}
        return EpisodePlan(kind, policy, horizon, True, 10, False, "failed", details)
    if kind == "partial":
        stop = int(rng.integers(10, max(11, int(0.9 * spec.expert_steps))))
        return EpisodePlan(
            kind, make_expert(spec), min(stop, horizon), False, 0, False, "partial", {"stopped_at": stop}
        )
    speed = float(rng.uniform(0.3, 0.6))
    n_detours = int(rng.integers(1, 3))
    detours = [[*rng.uniform(-0.15, 0.15, 2), rng.uniform(-0.05, 0.1)] for _ in range(n_detours)]
    policy = NoisyPolicy(make_expert(spec, speed=speed, detours=detours), 0.05, rng)
    details = {"speed": round(speed, 4), "detours": [[round(v, 4) for v in d] for d in detours]}
    return EpisodePlan(kind, policy, horizon, True, 10, False, "suboptimal", details)
