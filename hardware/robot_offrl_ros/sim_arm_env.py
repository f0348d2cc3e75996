"""A project task (robot_offrl_sim.tasks.make_env) driven the way a real arm is: by joint positions.

The tasks are built for OSC_POSE delta actions; a position-controlled arm behind ROS 2 takes
absolute joint positions instead. Here the same SimEnv (same scene, object placement, success
check, perturbations) gets robosuite's JOINT_POSITION part controller with ``input_type:
absolute`` for the arm (``SimEnv(controller="joint_position")``), so the setpoints the ROS
controllers compute are tracked by a PD loop with gravity compensation, as franka's position
interface does.

Everything is expressed in the robot's base frame (``base_link``), the frame the policy node's
workspace box and servo twists use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl_sim.initial_conditions import InitialCondition
from robot_offrl_sim.perturbations import Perturbation
from robot_offrl_sim.rollout import apply_perturbation
from robot_offrl_sim.tasks import make_env

GRIPPER_OPEN_ACTION, GRIPPER_CLOSE_ACTION = -1.0, 1.0  # robosuite's GRIP controller convention


class JointArmSim:
    """One task env with an absolute joint-position arm controller and a normalised gripper."""

    def __init__(self, task: str, cameras: Sequence[str], camera_size: int, kp: float) -> None:
        # The task's own env with robosuite's absolute JOINT_POSITION controller (tasks.joint_position_part,
        # shared with deployable tasks), whatever action space the task's data uses.
        self.sim = make_env(task, cameras=[], camera_size=camera_size, render_video=bool(cameras),
                            controller="joint_position", kp=kp)
        self.cameras = tuple(cameras)
        self.camera_size = int(camera_size)
        robot = self.sim.env.robots[0]
        self._robot = robot
        model = self.sim.env.sim.model
        self._qidx = np.asarray(robot._ref_joint_pos_indexes)
        self._vidx = np.asarray(robot._ref_joint_vel_indexes)
        self._gidx = np.asarray(robot._ref_gripper_joint_pos_indexes["right"])
        self._gvidx = np.asarray(robot._ref_gripper_joint_vel_indexes["right"])
        self.lower = np.array(model.jnt_range[robot.arm_joint_indexes, 0], dtype=np.float64)
        self.upper = np.array(model.jnt_range[robot.arm_joint_indexes, 1], dtype=np.float64)
        self.dt = 1.0 / float(self.sim.spec.control_freq)
        self.step_count = 0

    @property
    def n_joints(self) -> int:
        return int(self._qidx.size)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int, initial_condition: InitialCondition | None, region: str) -> InitialCondition:
        """Reset the task (the controller is rebuilt from the joint-position config) and place the object."""
        self.sim.reset(seed, initial_condition, region)
        self.step_count = 0
        ic = self.sim.initial_condition
        assert ic is not None
        return ic

    def step(self, q_target: np.ndarray, gripper_action: float) -> None:
        """One control period of physics towards ``q_target`` (rad), gripper action in [-1 open, 1 close]."""
        action = np.concatenate([np.asarray(q_target, dtype=np.float64), [float(np.clip(gripper_action, -1, 1))]])
        self.sim.env.step(action)
        self.sim.t += 1
        self.step_count += 1

    def apply(self, perturbation: Perturbation) -> dict[str, Any]:
        """Apply a scripted perturbation now; returns its record as a direct sweep's episode keeps it."""
        if perturbation.kind not in ("object", "arm-nudge"):
            raise ConfigError(f"the sim arm applies object and arm-nudge perturbations, not {perturbation.kind!r} "
                              "(an 'arm' push needs the OSC controller; use arm-nudge)")
        record, _ = apply_perturbation(self.sim, perturbation, GRIPPER_OPEN_ACTION)
        return record

    def object_pose(self) -> list[float]:
        """The object's pose as a direct sweep reports it at an episode's end (rounded like rollout's)."""
        return [round(v, 6) for v in self.sim.object_pose()]

    def success(self) -> bool:
        return self.sim.success()

    # ------------------------------------------------------------------ state
    def joint_positions(self) -> np.ndarray:
        return np.array(self.sim.env.sim.data.qpos[self._qidx], dtype=np.float64)

    def joint_velocities(self) -> np.ndarray:
        return np.array(self.sim.env.sim.data.qvel[self._vidx], dtype=np.float64)

    def finger_positions(self) -> np.ndarray:
        """Finger opening per finger (m, >= 0 each, as franka's gripper reports them)."""
        return np.abs(np.array(self.sim.env.sim.data.qpos[self._gidx], dtype=np.float64))

    def finger_velocities(self) -> np.ndarray:
        q = np.array(self.sim.env.sim.data.qpos[self._gidx], dtype=np.float64)
        return np.sign(q) * np.array(self.sim.env.sim.data.qvel[self._gvidx], dtype=np.float64)

    def _base(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.sim.env.sim.data
        body = self._robot.robot_model.root_body
        return np.array(data.get_body_xpos(body)), np.array(data.get_body_xmat(body)).reshape(3, 3)

    def eef_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (grip site) position and xyzw quaternion in the robot base frame."""
        from robosuite.utils.transform_utils import mat2quat

        data = self.sim.env.sim.data
        site = self._robot.eef_site_id["right"]
        base_p, base_r = self._base()
        pos = base_r.T @ (np.array(data.site_xpos[site]) - base_p)
        rot = base_r.T @ np.array(data.site_xmat[site]).reshape(3, 3)
        return pos, np.asarray(mat2quat(rot), dtype=np.float64)

    def object_world_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The task object's world position and xyzw quaternion (ground truth, for evaluation only)."""
        lo, _ = self.sim._qpos_addr
        q = np.array(self.sim.env.sim.data.qpos[lo : lo + 7], dtype=np.float64)
        return q[:3], np.array([q[4], q[5], q[6], q[3]])

    def twist_to_joint_step(self, twist: np.ndarray, dt: float) -> np.ndarray:
        """Joint displacement realising a base-frame twist (v, w) for ``dt`` s: damped least squares.

        What MoveIt Servo does with a TwistStamped before it reaches a position controller.
        """
        import mujoco

        model, data = self.sim.env.sim.model._model, self.sim.env.sim.data._data
        jacp = np.zeros((3, model.nv))
        jacr = np.zeros((3, model.nv))
        mujoco.mj_jacSite(model, data, jacp, jacr, self._robot.eef_site_id["right"])
        _, base_r = self._base()
        jac = np.vstack([base_r.T @ jacp[:, self._vidx], base_r.T @ jacr[:, self._vidx]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), np.asarray(twist, dtype=np.float64) * dt)
        return np.asarray(dq, dtype=np.float64)

    def render(self, camera: str) -> np.ndarray:
        """An upright RGB uint8 frame of ``camera`` at the configured size."""
        return self.sim.frame(camera, self.camera_size)

    def close(self) -> None:
        self.sim.close()
