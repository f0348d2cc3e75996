"""PickPlaceCan: grasp the can from above, carry it high over the bin walls, drop it into its quadrant."""

from __future__ import annotations

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl_sim.experts.base import CLOSE, OPEN, Obs, ScriptedExpert, Target
from robot_offrl_sim.spec import TaskSpec

CARRY_Z = 0.99  # world height that clears both bins' walls with the can hanging below the fingers


class CanExpert(ScriptedExpert):
    phases = ("approach", "descend", "grasp", "lift", "carry", "lower", "release", "retreat")
    phase_timeout = 100

    def __init__(self, spec: TaskSpec, **kwargs: object) -> None:
        if spec.goal is None:
            raise ConfigError(f"task {spec.name!r} needs a `goal` (target bin position) for its expert")
        self.goal = np.asarray(spec.goal, dtype=np.float64)
        super().__init__(spec, **kwargs)  # type: ignore[arg-type]

    def _yaw(self, obs: Obs) -> float:
        # The can is round: keep whatever wrist yaw we start with.
        if "yaw" not in self.memory:
            self.memory["yaw"] = self.gripper_yaw(obs)
        return float(self.memory["yaw"])  # type: ignore[arg-type]

    def phase_approach(self, obs: Obs) -> Target:
        pos = self.object_pos(obs) + np.array([0.0, 0.0, 0.08])
        return Target(pos, self._yaw(obs), OPEN, self.reached(obs, pos, 0.015))

    def phase_descend(self, obs: Obs) -> Target:
        # The fingertips touch the bin floor just below the can's centre: aim at the centre itself.
        pos = self.object_pos(obs) + np.array([0.0, 0.0, 0.005])
        return Target(pos, self._yaw(obs), OPEN, self.reached(obs, pos, 0.012))

    def phase_grasp(self, obs: Obs) -> Target:
        if "grasp_pos" not in self.memory:
            self.memory["grasp_pos"] = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy()
        return Target(self.memory["grasp_pos"], self._yaw(obs), CLOSE, self.phase_steps >= 12)  # type: ignore[arg-type]

    def phase_lift(self, obs: Obs) -> Target:
        base = self.memory["grasp_pos"]
        pos = np.array([base[0], base[1], CARRY_Z])  # type: ignore[index]
        return Target(pos, self._yaw(obs), CLOSE, obs["robot0_eef_pos"][2] > CARRY_Z - 0.03)

    def phase_carry(self, obs: Obs) -> Target:
        # Steer by where the can is, not where the hand is: the grasp is rarely centred.
        offset = self.object_pos(obs)[:2] - obs["robot0_eef_pos"][:2]
        pos = np.array([self.goal[0] - offset[0], self.goal[1] - offset[1], CARRY_Z])
        return Target(pos, self._yaw(obs), CLOSE, self.reached(obs, pos, 0.02))

    def phase_lower(self, obs: Obs) -> Target:
        offset = self.object_pos(obs)[:2] - obs["robot0_eef_pos"][:2]
        pos = np.array([self.goal[0] - offset[0], self.goal[1] - offset[1], self.goal[2] + 0.02])
        return Target(pos, self._yaw(obs), CLOSE, self.reached(obs, pos, 0.02))

    def phase_release(self, obs: Obs) -> Target:
        if "release_pos" not in self.memory:
            self.memory["release_pos"] = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy()
        return Target(self.memory["release_pos"], self._yaw(obs), OPEN, self.phase_steps >= 10)  # type: ignore[arg-type]

    def phase_retreat(self, obs: Obs) -> Target:
        base = self.memory["release_pos"]
        pos = np.array([base[0], base[1], CARRY_Z])  # type: ignore[index]
        return Target(pos, self._yaw(obs), OPEN, False)
