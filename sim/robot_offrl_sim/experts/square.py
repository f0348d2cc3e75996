"""NutAssemblySquare: grasp the nut by its handle, carry it over the square peg, lower it on, let go."""

from __future__ import annotations

import math

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl_sim.experts.base import CLOSE, OPEN, Obs, ScriptedExpert, Target, nearest_equivalent, rot_z
from robot_offrl_sim.spec import TaskSpec

HANDLE = np.array([0.054, 0.0, 0.0])  # handle centre in the nut's frame (robosuite square-nut.xml)
CARRY_Z = 1.0  # eef height that keeps the nut (held at eef height) above the 0.95 m peg top
# Handle direction while placing: toward the robot's right (-y) keeps the hand ~5 cm closer to the
# base than a handle pointing at the pegs, which the Panda can barely reach at carry height.
PLACE_HANDLE_YAW = -math.pi / 2.0


class SquareExpert(ScriptedExpert):
    phases = ("approach", "descend", "grasp", "lift", "carry", "lower", "release", "retreat")
    phase_timeout = 100

    def __init__(self, spec: TaskSpec, **kwargs: object) -> None:
        if spec.goal is None:
            raise ConfigError(f"task {spec.name!r} needs a `goal` (peg position) for its expert")
        self.goal = np.asarray(spec.goal, dtype=np.float64)
        super().__init__(spec, **kwargs)  # type: ignore[arg-type]

    def handle_pos(self, obs: Obs) -> np.ndarray:
        return self.object_pos(obs) + rot_z(self.object_yaw(obs)) @ HANDLE

    def _grasp_yaw(self, obs: Obs) -> float:
        # Fingers close across the handle (the nut's y axis); the handle is symmetric under a half turn.
        if "grasp_yaw" not in self.memory:
            self.memory["grasp_yaw"] = nearest_equivalent(self.object_yaw(obs), self.gripper_yaw(obs), math.pi)
        return float(self.memory["grasp_yaw"])  # type: ignore[arg-type]

    def _carry_yaw(self, obs: Obs) -> float:
        # Turn the wrist so the handle ends up at PLACE_HANDLE_YAW (which also squares the nut to the peg).
        nut_yaw = self.object_yaw(obs)
        return self.gripper_yaw(obs) + (nearest_equivalent(PLACE_HANDLE_YAW, nut_yaw, 2 * math.pi) - nut_yaw)

    def _over_peg(self, obs: Obs, z: float) -> np.ndarray:
        offset = self.object_pos(obs)[:2] - obs["robot0_eef_pos"][:2]
        return np.array([self.goal[0] - offset[0], self.goal[1] - offset[1], z])

    def phase_approach(self, obs: Obs) -> Target:
        pos = self.handle_pos(obs) + np.array([0.0, 0.0, 0.06])
        yaw = self._grasp_yaw(obs)
        yaw_ok = abs(self.gripper_yaw(obs) - yaw) < 0.08
        return Target(pos, yaw, OPEN, self.reached(obs, pos, 0.012) and yaw_ok)

    def phase_descend(self, obs: Obs) -> Target:
        pos = self.handle_pos(obs) + np.array([0.0, 0.0, -0.005])
        return Target(pos, self._grasp_yaw(obs), OPEN, self.reached(obs, pos, 0.008))

    def phase_grasp(self, obs: Obs) -> Target:
        if "grasp_pos" not in self.memory:
            self.memory["grasp_pos"] = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy()
        return Target(self.memory["grasp_pos"], self._grasp_yaw(obs), CLOSE, self.phase_steps >= 12)  # type: ignore[arg-type]

    def phase_lift(self, obs: Obs) -> Target:
        base = self.memory["grasp_pos"]
        pos = np.array([base[0], base[1], CARRY_Z])  # type: ignore[index]
        return Target(pos, self._grasp_yaw(obs), CLOSE, obs["robot0_eef_pos"][2] > CARRY_Z - 0.03)

    def phase_carry(self, obs: Obs) -> Target:
        pos = self._over_peg(obs, CARRY_Z)
        nut_xy_err = np.linalg.norm(self.object_pos(obs)[:2] - self.goal[:2])
        yaw_err = abs(nearest_equivalent(PLACE_HANDLE_YAW, self.object_yaw(obs), 2 * math.pi) - self.object_yaw(obs))
        return Target(pos, self._carry_yaw(obs), CLOSE, bool(nut_xy_err < 0.006 and yaw_err < 0.05))

    def phase_lower(self, obs: Obs) -> Target:
        # Go down only while the nut is centred over the peg; otherwise re-centre at the current height.
        nut_xy_err = float(np.linalg.norm(self.object_pos(obs)[:2] - self.goal[:2]))
        dz = 0.02 if nut_xy_err < 0.01 else 0.0
        pos = self._over_peg(obs, obs["robot0_eef_pos"][2] - dz)
        done = self.object_pos(obs)[2] < self.spec_table_z + 0.035
        return Target(pos, self._carry_yaw(obs), CLOSE, bool(done))

    def phase_release(self, obs: Obs) -> Target:
        if "release_pos" not in self.memory:
            self.memory["release_pos"] = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy()
        return Target(self.memory["release_pos"], self.gripper_yaw(obs), OPEN, self.phase_steps >= 10)  # type: ignore[arg-type]

    def phase_retreat(self, obs: Obs) -> Target:
        base = self.memory["release_pos"]
        pos = np.array([base[0], base[1], CARRY_Z])  # type: ignore[index]
        return Target(pos, self.gripper_yaw(obs), OPEN, False)

    @property
    def spec_table_z(self) -> float:
        return float(self.goal[2]) - 0.03  # peg body sits 3 cm above the table top (0.82 m)
