"""Failed attempts with the errors real attempts have: smooth drift and fumbled grasps.

An operator's or an earlier controller's failed attempt does not shake the arm with white noise (the
`failed` stress-test kind does, at 16x the expert's jerk); it drifts off a little for a while, or it
closes the fingers too early, too late or beside the object. These wrappers degrade a scripted expert
that way, so a failure looks like the expert's motion with a plausible mistake in it.
"""

from __future__ import annotations

import math

import numpy as np

from robot_offrl_sim.experts.base import OPEN, Obs, ScriptedExpert

MAX_SMOOTH_STD = 0.2
FUMBLES = ("early_close", "late_close", "miss")
# Height above the grasp point at which an early close fires, per expert family: above a cube's top
# for Lift, above the can's top (it is ~10 cm tall: closing lower still catches it) for Can.
EARLY_CLOSE_HEIGHT = {"lift": (0.02, 0.04), "can": (0.06, 0.075), "square": (0.02, 0.04)}


class SmoothNoisePolicy:
    """Ornstein-Uhlenbeck (AR(1)) noise on the arm's six action dims of another policy.

    Stationary std `std` (<= 0.2) and correlation time `tau` steps: the noise drifts instead of
    jumping, so the step-to-step change it adds is std * sqrt(2 (1 - exp(-1/tau))), a few times
    smaller than the noise itself. The gripper command is left alone.
    """

    def __init__(self, base: object, std: float, tau: float, rng: np.random.Generator) -> None:
        if not 0.0 < std <= MAX_SMOOTH_STD:
            raise ValueError(f"smooth noise std must be in (0, {MAX_SMOOTH_STD}], got {std}")
        if tau < 1.0:
            raise ValueError(f"correlation time tau must be >= 1 step, got {tau}")
        self.base, self.std, self.rng = base, float(std), rng
        self.decay = math.exp(-1.0 / float(tau))
        self.noise = np.zeros(6)

    def reset(self) -> None:
        self.base.reset()  # type: ignore[attr-defined]
        self.noise = self.rng.normal(0.0, self.std, size=6)  # start in the stationary distribution

    def act(self, obs: Obs) -> np.ndarray:
        a = np.asarray(self.base.act(obs), dtype=np.float64)  # type: ignore[attr-defined]
        out = a.copy()
        out[:6] = a[:6] + self.noise
        self.noise = self.decay * self.noise + math.sqrt(1.0 - self.decay**2) * self.rng.normal(0.0, self.std, size=6)
        return np.clip(out, -1.0, 1.0).astype(np.float32)


class FumbledGrasp:
    """The expert with one grasp mistake, then it carries on as if the grasp had worked.

    - early_close: the fingers close while still `amount` metres above the grasp height (they land
      on top of the object);
    - late_close: the fingers stay open for the grasp phase and `amount` steps into the lift;
    - miss: the hand aims `amount` metres beside the object (a bad pose estimate) and closes there.
    """

    def __init__(self, base: ScriptedExpert, mode: str, amount: float, rng: np.random.Generator) -> None:
        if mode not in FUMBLES:
            raise ValueError(f"unknown fumble {mode!r}; use one of {list(FUMBLES)}")
        self.base, self.mode, self.amount = base, mode, float(amount)
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        self.offset = self.amount * np.array([math.cos(angle), math.sin(angle), 0.0])
        self.closed = False

    def reset(self) -> None:
        self.base.reset()
        self.closed = False

    def _grasping(self) -> bool:
        return self.base.phase in ("approach", "descend", "grasp")

    def act(self, obs: Obs) -> np.ndarray:
        phase = self.base.phase
        if self.mode == "miss" and self._grasping():
            obs = dict(obs)
            obj = np.array(obs["object"], dtype=np.float32)
            i = self.base.spec.object_pos_index
            obj[i : i + 3] += self.offset.astype(np.float32)
            obs["object"] = obj
        low = obs["robot0_eef_pos"][2] < float(self.base.object_pos(obs)[2]) + self.amount
        if self.mode == "early_close" and phase == "descend" and low and not self.closed:
            self.closed = True
            self.base.skip_to("grasp")  # close here, still above the grasp height, then lift
        a = np.asarray(self.base.act(obs), dtype=np.float32).copy()
        if self.mode == "late_close" and (
            phase == "grasp" or (phase == "lift" and self.base.phase_steps < self.amount)
        ):
            a[6] = OPEN
        return a
