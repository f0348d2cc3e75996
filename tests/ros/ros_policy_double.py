"""A small deterministic policy with PolicyRuntime's interface, for the ROS 2 node tests.

It moves every joint toward ``current + offset`` over the chunk, so commands are predictable,
and can be switched to misbehave (NaN, out-of-limit values, exceptions) to exercise the node's
safety paths. Tests with a real trained checkpoint swap the factory in conftest.py only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from robot_offrl.data import ActionSpace, KeySpec
from robot_offrl.errors import NonFiniteActionError
from robot_offrl.runtime.protocol import Camera, cameras_of

PANDA_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
PANDA_UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]


@dataclass
class ScriptedPolicy:
    """``mode``: offset (default), nan, nonfinite_error (what PolicyRuntime raises for NaN), out_of_limits, raise."""

    joint_names: Sequence[str] = tuple(PANDA_JOINTS)
    image_keys: Mapping[str, tuple[int, int, int]] = field(default_factory=lambda: {"agentview_image": (84, 84, 3)})
    offset: float = 0.05
    n_action_steps: int = 8
    control_rate_hz: float = 10.0
    obs_horizon: int = 2
    extra_actions: Sequence[str] = ()
    mode: str = "offset"
    slow_s: float = 3.0  # mode "slow": how long each plan takes
    scored_actions: int = 1  # PolicyRuntime's: leading actions the candidate choice depends on
    resets: int = 0
    calls: int = 0
    in_plan: bool = False  # True while a plan is being computed (to act during inference)
    last_obs: dict[str, np.ndarray] | None = None
    events: list[str] = field(default_factory=list)  # "observe" / "plan", in call order

    def observe(self, obs: Mapping[str, np.ndarray]) -> None:
        """PolicyRuntime.observe: a control period's observation pushed into the history, no plan."""
        self.events.append("observe")

    @property
    def obs_schema(self) -> list[KeySpec]:
        specs = [KeySpec("joint_pos", "float32", (len(self.joint_names),), "lowdim")]
        specs += [KeySpec(k, "uint8", tuple(s), "rgb") for k, s in self.image_keys.items()]
        return specs

    @property
    def cameras(self) -> tuple[Camera, ...]:
        return cameras_of(self.obs_schema)

    @property
    def action_space(self) -> ActionSpace:
        names = list(self.joint_names) + list(self.extra_actions)
        n = len(names)
        return ActionSpace(names, ["rad"] * n, "absolute", [-3.0] * n, [3.0] * n)

    def reset(self) -> None:
        self.resets += 1

    def plan(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        self.calls += 1
        self.events.append("plan")
        self.last_obs = {k: np.array(v) for k, v in obs.items()}
        if self.mode == "raise":
            raise RuntimeError("scripted inference failure")
        if self.mode == "nonfinite_error":
            raise NonFiniteActionError("scripted: the networks produced a non-finite action")
        if self.mode == "slow":
            self.in_plan = True
            time.sleep(self.slow_s)
            self.in_plan = False
        q = np.asarray(obs["joint_pos"], dtype=np.float64)
        ramp = (np.arange(1, self.n_action_steps + 1) / self.n_action_steps)[:, None]
        chunk = q[None, :] + self.offset * ramp
        if self.mode == "nan":
            chunk[3, 1] = np.nan
        elif self.mode == "out_of_limits":
            chunk[:, 0] = 10.0  # far beyond panda_joint1's +2.8973 limit
        if self.extra_actions:
            chunk = np.hstack([chunk, np.full((self.n_action_steps, len(self.extra_actions)), 0.5)])
        return chunk.astype(np.float32)


@dataclass
class ScriptedDeltaPolicy:
    """End-effector delta actions (the sim's OSC_POSE layout) for the servo output: a constant push."""

    action: Sequence[float] = (0.5, 0.0, 0.0, 0.0, 0.0, 0.2, 1.0)
    n_action_steps: int = 8
    control_rate_hz: float = 10.0
    obs_horizon: int = 2
    calls: int = 0
    bounded: bool = True  # False: a schema without action bounds (stored as null, read back as +-inf)

    @property
    def obs_schema(self) -> list[KeySpec]:
        return [KeySpec("robot0_eef_pos", "float32", (3,), "lowdim"),
                KeySpec("agentview_image", "uint8", (84, 84, 3), "rgb")]

    @property
    def cameras(self) -> tuple[Camera, ...]:
        return cameras_of(self.obs_schema)

    @property
    def action_space(self) -> ActionSpace:
        names = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
        if not self.bounded:
            return ActionSpace(names, ["normalized"] * 7, "delta", [-np.inf] * 7, [np.inf] * 7)
        return ActionSpace(names, ["normalized"] * 7, "delta", [-1.0] * 7, [1.0] * 7)

    def reset(self) -> None:
        pass

    def plan(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        self.calls += 1
        return np.tile(np.asarray(self.action, dtype=np.float32), (self.n_action_steps, 1))
