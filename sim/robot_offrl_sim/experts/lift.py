"""Lift: hover over the cube, descend with the fingers square to its faces, close, lift."""

from __future__ import annotations

import math

import numpy as np

from robot_offrl_sim.experts.base import CLOSE, OPEN, Obs, ScriptedExpert, Target, nearest_equivalent


class LiftExpert(ScriptedExpert):
    phases = ("approach", "descend", "grasp", "lift")

    def _grasp_yaw(self, obs: Obs) -> float:
        # A cube looks the same every quarter turn: pick the grasp that needs the least wrist rotation.
        if "grasp_yaw" not in self.memory:
            self.memory["grasp_yaw"] = nearest_equivalent(
                self.object_yaw(obs), self.gripper_yaw(obs), math.pi / 2.0
            )
        return float(self.memory["grasp_yaw"])  # type: ignore[arg-type]

    def phase_approach(self, obs: Obs) -> Target:
        pos = self.object_pos(obs) + np.array([0.0, 0.0, 0.06])
        yaw = self._grasp_yaw(obs)
        yaw_ok = abs(self.gripper_yaw(obs) - yaw) < 0.08
        return Target(pos, yaw, OPEN, self.reached(obs, pos, 0.012) and yaw_ok)

    def phase_descend(self, obs: Obs) -> Target:
        pos = self.object_pos(obs) + np.array([0.0, 0.0, -0.005])
        return Target(pos, self._grasp_yaw(obs), OPEN, self.reached(obs, pos, 0.008))

    def phase_grasp(self, obs: Obs) -> Target:
        if "grasp_pos" not in self.memory:
            self.memory["grasp_pos"] = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy()
        pos = self.memory["grasp_pos"]
        return Target(pos, self._grasp_yaw(obs), CLOSE, self.phase_steps >= 12)  # type: ignore[arg-type]

    def phase_lift(self, obs: Obs) -> Target:
        base = self.memory["grasp_pos"]
        pos = np.array([base[0], base[1], base[2] + 0.2])  # type: ignore[index]
        return Target(pos, self._grasp_yaw(obs), CLOSE, False)
