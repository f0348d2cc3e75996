"""Phase-based scripted experts: a Cartesian servo plus a small state machine per task.

The experts read the object pose from the observation (never from the simulator), so they are policies
in exactly the sense learned ones are (`reset()`, `act(obs)`), and the non-expert generators can reuse
them with noise, early stops, detours or a slower speed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robot_offrl_sim.spec import TaskSpec

Obs = dict[str, np.ndarray]
OPEN, CLOSE = -1.0, 1.0
# Gripper pointing straight down (rotation of pi about x): the Panda's home orientation.
DOWN = np.diag([1.0, -1.0, -1.0])


def quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    x, y, z, w = (float(v) for v in q)
    n = x * x + y * y + z * z + w * w
    s = 2.0 / n if n > 0 else 0.0
    return np.array(
        [
            [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
            [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
            [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
        ]
    )


def rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotvec(r: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (the OSC controller's rotation-delta convention)."""
    cos = max(-1.0, min(1.0, (np.trace(r) - 1.0) / 2.0))
    angle = math.acos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # angle ~ pi: take the axis from the symmetric part
        w, v = np.linalg.eigh((r + r.T) / 2.0)
        axis = v[:, int(np.argmax(w))]
        norm = 1.0
    return axis / norm * angle


def yaw_of(obs_quat: np.ndarray) -> float:
    """Yaw of a down-pointing gripper, or of an upright object, from an xyzw quaternion."""
    r = quat_xyzw_to_mat(obs_quat)
    return math.atan2(r[1, 0], r[0, 0])


def nearest_equivalent(target: float, current: float, period: float) -> float:
    """The angle equal to `target` modulo `period` closest to `current` (symmetric grasps)."""
    return current + ((target - current + period / 2.0) % period) - period / 2.0


def servo(
    obs: Obs,
    pos: np.ndarray,
    yaw: float,
    gripper: float,
    max_action: float = 1.0,
    pos_gain: float = 15.0,
    rot_gain: float = 2.5,
) -> np.ndarray:
    """OSC delta action toward a position and a down-pointing orientation with the given yaw."""
    a = np.zeros(7)
    a[:3] = np.clip((np.asarray(pos) - obs["robot0_eef_pos"]) * pos_gain, -max_action, max_action)
    r_cur = quat_xyzw_to_mat(obs["robot0_eef_quat"])
    a[3:6] = np.clip(rotvec(rot_z(yaw) @ DOWN @ r_cur.T) * rot_gain, -1.0, 1.0)
    a[6] = gripper
    return a


@dataclass
class Target:
    pos: np.ndarray
    yaw: float
    gripper: float
    done: bool


class ScriptedExpert:
    """Runs `phases` in order; each phase method returns a Target and says when it is done.

    Knobs shared by all tasks so generators can degrade an expert without copying it:
    `speed` scales the largest translation command (slow, suboptimal demos), `detours` are world-frame
    offsets from the start pose visited before the task begins, `stop_after_phase` halts (holds still)
    once that phase is reached (partial demos).
    """

    phases: tuple[str, ...] = ()
    phase_timeout: int = 80

    def __init__(
        self,
        spec: TaskSpec,
        speed: float = 1.0,
        detours: Sequence[Sequence[float]] = (),
    ) -> None:
        self.spec = spec
        self.speed = float(speed)
        self.detours = [np.asarray(d, dtype=np.float64) for d in detours]
        self.reset()

    def reset(self) -> None:
        self.phase_index = 0
        self.phase_steps = 0
        self.detour_index = 0
        self.start_pos: np.ndarray | None = None
        self.memory: dict[str, object] = {}

    @property
    def phase(self) -> str:
        if self.detour_index < len(self.detours):
            return "detour"
        return self.phases[min(self.phase_index, len(self.phases) - 1)]

    def skip_to(self, phase: str) -> None:
        """Jump to `phase` now (a fumbled attempt: e.g. start the grasp before the hand is down)."""
        self.phase_index = self.phases.index(phase)
        self.phase_steps = 0

    # ---------------------------------------------------------------- observation helpers
    def object_pos(self, obs: Obs) -> np.ndarray:
        i = self.spec.object_pos_index
        return np.asarray(obs["object"][i : i + 3], dtype=np.float64)

    def object_yaw(self, obs: Obs) -> float:
        i = self.spec.object_quat_index
        return yaw_of(obs["object"][i : i + 4])

    @staticmethod
    def gripper_yaw(obs: Obs) -> float:
        return yaw_of(obs["robot0_eef_quat"])

    @staticmethod
    def reached(obs: Obs, pos: np.ndarray, tol: float) -> bool:
        return float(np.linalg.norm(obs["robot0_eef_pos"] - pos)) < tol

    # ---------------------------------------------------------------- policy interface
    def act(self, obs: Obs) -> np.ndarray:
        if self.start_pos is None:
            self.start_pos = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy()
        if self.detour_index < len(self.detours):
            target = self.start_pos + self.detours[self.detour_index]
            yaw = self.gripper_yaw(obs)
            self.phase_steps += 1
            if self.reached(obs, target, 0.02) or self.phase_steps > self.phase_timeout:
                self.detour_index += 1
                self.phase_steps = 0
            return servo(obs, target, yaw, OPEN, max_action=self.speed).astype(np.float32)
        name = self.phases[min(self.phase_index, len(self.phases) - 1)]
        tgt: Target = getattr(self, f"phase_{name}")(obs)
        self.phase_steps += 1
        if (tgt.done or self.phase_steps > self.phase_timeout) and self.phase_index < len(self.phases) - 1:
            self.phase_index += 1
            self.phase_steps = 0
        return servo(obs, tgt.pos, tgt.yaw, tgt.gripper, max_action=self.speed).astype(np.float32)
