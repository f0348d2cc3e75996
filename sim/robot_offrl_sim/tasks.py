"""One small environment interface over robosuite Lift / PickPlaceCan / NutAssemblySquare.

Data collection, evaluation sweeps and the teleop recorder all see the same thing: observations named as
in docs/contracts.md, the task's action space, the env's own success check, and object poses that are set
exactly (not left to robosuite's random sampler) so every episode can be re-run.

A task's actions are a 7-D OSC_POSE delta in [-1, 1] (the scripted experts' space) or, for a deployable
task (`action: joint_position`), absolute joint positions plus the gripper: what policy_node sends a
real arm. The scripted experts still drive a deployable task through OSC_POSE; the env then records the
joint positions each step reached as that step's absolute target (`last_action`), which the
joint-position controller replays (tests/sim/test_deployable_task.py measures how faithfully).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl_sim.experts.base import yaw_of
from robot_offrl_sim.initial_conditions import InitialCondition, draw_initial_condition
from robot_offrl_sim.spec import TaskSpec, check_cameras, load_task

Obs = dict[str, np.ndarray]
ACTION_DIM = 7
ACTION_NAMES = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
GRIPPER_ACTION = "gripper"  # the gripper's action name in both spaces (policy.yaml's gripper_action_name)
# What the scripted experts and every generated kind but policy_rollout output.
SCRIPTED_CONTROLLER = "osc_pose"
# Joint-position controller stiffness (robosuite JOINT_POSITION kp) unless a task sets joint_kp.
DEFAULT_JOINT_KP = 150.0
# Keys the scripted experts read; a deployable task's observations carry them too (privileged, never
# stored: obs_keys and the store schema list only what a real arm provides).
EXPERT_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "object")
_ROBOSUITE_LOGGER = "robosuite_logs"
_quiet_installed = False


def _import_triton_before_gl() -> None:
    """Import triton, if installed, before robosuite opens an offscreen GL context.

    Triton's first import segfaults in a process that already holds a Mesa EGL context (torch 2.14,
    mujoco 3.3). torchvision imports it through torch._dynamo, so a process that renders images and then
    builds a vision encoder (an image dataset build followed by training, as `robot-offrl experiment`
    does) would crash. Imported first, both work.
    """
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401


class _BelowLevel(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def quiet_robosuite(level: int = logging.ERROR) -> None:
    """robosuite logs a dozen harmless warnings per env (missing private macros, unused controller parts).

    A filter on its logger, installed before robosuite is imported, drops records below `level` and
    keeps errors visible. ROBOT_OFFRL_SIM_VERBOSE=1 keeps everything (debugging a controller config).
    """
    global _quiet_installed
    if _quiet_installed or os.environ.get("ROBOT_OFFRL_SIM_VERBOSE"):
        return
    logging.getLogger(_ROBOSUITE_LOGGER).addFilter(_BelowLevel(level))
    _quiet_installed = True


def joint_position_part(kp: float) -> dict[str, Any]:
    """robosuite's JOINT_POSITION arm controller with absolute input and the GRIP gripper.

    Setpoints are tracked by a PD loop with gravity compensation, as franka's position interface does;
    the sim arm node and deployable tasks share this one definition.
    """
    if not kp > 0:
        raise ConfigError(f"kp must be > 0, got {kp}")
    from robosuite.controllers import load_part_controller_config

    part = load_part_controller_config(default_controller="JOINT_POSITION")
    part.update(input_type="absolute", kp=float(kp), gripper={"type": "GRIP"})
    return dict(part)


def _import_robosuite() -> Any:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    quiet_robosuite()
    import robosuite

    return robosuite


class SimEnv:
    """A robosuite task with controlled initial conditions; `reset(seed, ...)` fully determines an episode.

    The robosuite env is built once (hard_reset=False) with a fixed model seed, so object sizes never
    change between episodes; each reset reseeds the env's generator (robot joint noise) from the episode
    seed and then places the object exactly.
    """

    def __init__(
        self,
        task: str | TaskSpec,
        cameras: Sequence[str] | None = None,
        camera_size: int | None = None,
        horizon: int | None = None,
        render_video: bool = False,
        controller: str | None = None,
        kp: float | None = None,
    ) -> None:
        self.spec = task if isinstance(task, TaskSpec) else load_task(task)
        self.cameras = check_cameras(list(self.spec.cameras if cameras is None else cameras), self.spec.name)
        self.camera_size = int(camera_size or self.spec.camera_size)
        if self.camera_size < 8:
            raise ConfigError(f"camera size must be at least 8 pixels, got {self.camera_size}")
        self.horizon = int(horizon or self.spec.horizon)
        if self.horizon < 1:
            raise ConfigError(f"horizon must be >= 1, got {self.horizon}")
        suite = _import_robosuite()
        from robosuite.controllers import load_composite_controller_config

        composite = load_composite_controller_config(controller="BASIC", robot=self.spec.robot)
        # Only the arm/gripper parts exist on a Panda; dropping the rest avoids robosuite's skip warnings.
        composite["body_parts"] = {"right": composite["body_parts"]["right"]}
        if composite["body_parts"]["right"]["type"] != "OSC_POSE":
            raise ConfigError("robosuite's BASIC controller for this robot is not OSC_POSE")
        use_cams = bool(self.cameras)
        if use_cams or render_video:
            _import_triton_before_gl()
        self.env = suite.make(
            self.spec.env_name,
            robots=self.spec.robot,
            controller_configs=composite,
            has_renderer=False,
            has_offscreen_renderer=use_cams or render_video,
            use_camera_obs=use_cams,
            camera_names=list(self.cameras) if use_cams else "agentview",
            camera_heights=self.camera_size,
            camera_widths=self.camera_size,
            control_freq=self.spec.control_freq,
            horizon=self.horizon,
            ignore_done=True,
            hard_reset=False,
            reward_shaping=False,
            seed=0,
        )
        self._render_video = render_video or use_cams
        self._osc_part = copy.deepcopy(composite["body_parts"]["right"])
        self.kp = float(kp if kp is not None else (self.spec.joint_kp or DEFAULT_JOINT_KP))
        robot = self.env.robots[0]
        self._joint_qidx = np.asarray(robot._ref_joint_pos_indexes)
        self._finger_qidx = np.asarray(robot._ref_gripper_joint_pos_indexes["right"])
        self.controller = SCRIPTED_CONTROLLER  # the one running now (suite.make built OSC)
        self._next_controller = SCRIPTED_CONTROLLER
        self.set_controller(controller or self.spec.action)
        self.last_action: np.ndarray | None = None
        model = self.env.sim.model
        self._qpos_addr = model.get_joint_qpos_addr(self.spec.object_joint)
        self._qvel_addr = model.get_joint_qvel_addr(self.spec.object_joint)
        self.t = 0
        self.initial_condition: InitialCondition | None = None
        self._last_raw: Mapping[str, np.ndarray] = {}
        self._check_object_state()

    def _check_object_state(self) -> None:
        """Name a wrong `object_state` entry now, not as a KeyError at the first observation."""
        if not self.spec.object_state:
            return
        raw = self.env._get_observations(force_update=True)
        missing = [k for k in self.spec.object_state if k not in raw]
        if missing:
            known = sorted(k for k in raw if not k.startswith("robot0_") and not k.endswith("-state"))
            raise ConfigError(
                f"task {self.spec.name!r}: object_state {missing} are not observations of {self.spec.env_name}; "
                f"known: {known}"
            )

    # ----------------------------------------------------------------- controller
    def set_controller(self, kind: str) -> None:
        """Run robosuite's OSC_POSE or absolute JOINT_POSITION controller from the next reset on.

        robosuite rebuilds a robot's controllers from its config at every reset, so one env serves a
        deployable task's scripted episodes (OSC, recorded as joint targets) and learned ones (joints).
        """
        from robot_offrl_sim.spec import ACTIONS

        if kind not in ACTIONS:
            raise ConfigError(f"controller must be one of {list(ACTIONS)}, got {kind!r}")
        part = self._osc_part if kind == "osc_pose" else joint_position_part(self.kp)
        robot = self.env.robots[0]
        robot.composite_controller_config["body_parts"] = {"right": copy.deepcopy(part)}
        robot.part_controller_config = copy.deepcopy(robot.composite_controller_config["body_parts"])
        self._next_controller = kind

    @property
    def action_dim(self) -> int:
        """Length of the action `step` takes (the controller's), not necessarily the stored one's."""
        return ACTION_DIM if self.controller == "osc_pose" else int(self._joint_qidx.size) + 1

    def joint_positions(self) -> np.ndarray:
        return np.array(self.env.sim.data.qpos[self._joint_qidx], dtype=np.float64)

    # ----------------------------------------------------------------- observation / action naming
    @property
    def image_keys(self) -> list[str]:
        return [f"{c}_image" for c in self.cameras]

    @property
    def obs_keys(self) -> list[str]:
        return list(self.spec.lowdim_keys) + self.image_keys

    def _convert(self, raw: Mapping[str, np.ndarray]) -> Obs:
        obs: Obs = {}
        deployable = self.spec.action == "joint_position"
        keys = list(self.spec.lowdim_keys)
        if deployable:
            keys += [k for k in EXPERT_KEYS if k not in keys]
        for key in keys:
            # A deployable task reads proprioception from the joints now, as /joint_states reports it
            # (robosuite's observables sample it earlier in the control step), fingers as their opening.
            if key == "joint_pos":
                obs[key] = self.joint_positions().astype(np.float32)
                continue
            if key == "robot0_gripper_qpos" and deployable:
                obs[key] = np.abs(self.env.sim.data.qpos[self._finger_qidx]).astype(np.float32)
                continue
            if key == "object" and self.spec.object_state:
                obs[key] = np.concatenate([np.asarray(raw[k], dtype=np.float32).reshape(-1) for k in self.spec.object_state])
                continue
            src = "object-state" if key == "object" else key
            obs[key] = np.asarray(raw[src], dtype=np.float32).copy()
        from robosuite import macros

        flip = macros.IMAGE_CONVENTION == "opengl"
        for cam in self.cameras:
            img = np.asarray(raw[f"{cam}_image"], dtype=np.uint8)
            obs[f"{cam}_image"] = np.ascontiguousarray(img[::-1] if flip else img)
        return obs

    def observe(self) -> Obs:
        self._last_raw = self.env._get_observations(force_update=True)
        return self._convert(self._last_raw)

    # ----------------------------------------------------------------- episode control
    def reset(
        self,
        seed: int,
        initial_condition: InitialCondition | Mapping[str, object] | None = None,
        region: str = "narrow",
    ) -> Obs:
        """Reset and place the object; without an explicit pose it is drawn from `region` with `seed`."""
        if initial_condition is None:
            ic = draw_initial_condition(self.spec, region, seed)
        elif isinstance(initial_condition, InitialCondition):
            ic = initial_condition
        else:
            ic = InitialCondition.from_mapping(initial_condition)
        if not self.spec.table.contains(ic.x, ic.y):
            raise ConfigError(
                f"task {self.spec.name!r}: initial object pose x={ic.x:.3f} y={ic.y:.3f} is outside the "
                f"table limits x={list(self.spec.table.x)} y={list(self.spec.table.y)}"
            )
        self.env.rng = np.random.default_rng([int(seed), 0x5E])
        self.env.reset()
        self.controller = self._next_controller
        self.set_object_pose(ic.x, ic.y, ic.yaw)
        self.initial_condition = ic
        self.t = 0
        return self.observe()

    def step(self, action: np.ndarray) -> Obs:
        """One control step; `last_action` is then the step as the task's store records it."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        dim = self.action_dim
        if a.shape != (dim,):
            raise ConfigError(f"action must have shape ({dim},) for the {self.controller} controller, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"action at step {self.t} is not finite: {a.tolist()}")
        a = np.clip(a, -1.0, 1.0) if self.controller == "osc_pose" else np.concatenate([a[:-1], np.clip(a[-1:], -1, 1)])
        raw, _, _, _ = self.env.step(a)
        self._last_raw = raw
        self.t += 1
        if self.spec.action == self.controller:
            self.last_action = a.astype(np.float32)
        else:  # a scripted OSC step of a deployable task: the joint positions it reached are its target
            self.last_action = np.concatenate([self.joint_positions(), a[-1:]]).astype(np.float32)
        return self._convert(raw)

    def success(self) -> bool:
        return bool(self.env._check_success())

    # ----------------------------------------------------------------- object pose
    def object_pose(self) -> tuple[float, float, float]:
        """(x, y, yaw) of the object relative to the task origin."""
        lo, _ = self._qpos_addr
        q = self.env.sim.data.qpos[lo : lo + 7]
        w, x, y, z = (float(v) for v in q[3:7])  # MuJoCo stores wxyz; yaw_of takes xyzw
        yaw = yaw_of(np.array([x, y, z, w]))
        return float(q[0] - self.spec.origin[0]), float(q[1] - self.spec.origin[1]), yaw

    def object_height(self) -> float:
        lo, _ = self._qpos_addr
        return float(self.env.sim.data.qpos[lo + 2])

    def set_object_pose(self, x: float, y: float, yaw: float) -> None:
        """Write the object's free joint directly: exact placement, upright, at rest, at its current height."""
        lo, _ = self._qpos_addr
        qpos = self.env.sim.data.qpos
        qpos[lo] = self.spec.origin[0] + x
        qpos[lo + 1] = self.spec.origin[1] + y
        qpos[lo + 3 : lo + 7] = [math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)]
        vlo, vhi = self._qvel_addr
        self.env.sim.data.qvel[vlo:vhi] = 0.0
        self.env.sim.forward()

    def displace_object(self, dx: float, dy: float, dyaw: float) -> tuple[float, float, float]:
        """Move the object by an offset (keeping its height and tilt), e.g. out of the gripper's reach."""
        lo, _ = self._qpos_addr
        qpos = self.env.sim.data.qpos
        qpos[lo] += dx
        qpos[lo + 1] += dy
        w, x, y, z = (float(v) for v in qpos[lo + 3 : lo + 7])
        c, s = math.cos(dyaw / 2.0), math.sin(dyaw / 2.0)
        # Left-multiply by a rotation about world z so the object's tilt is untouched.
        qpos[lo + 3 : lo + 7] = [c * w - s * z, c * x - s * y, c * y + s * x, c * z + s * w]
        vlo, vhi = self._qvel_addr
        self.env.sim.data.qvel[vlo:vhi] = 0.0
        self.env.sim.forward()
        return self.object_pose()

    # ----------------------------------------------------------------- arm
    def eef_pos(self) -> np.ndarray:
        robot = self.env.robots[0]
        return np.array(self.env.sim.data.site_xpos[robot.eef_site_id["right"]])

    def nudge_arm(self, offset: Sequence[float]) -> None:
        """Displace the end effector by `offset` (metres, world frame) in one jump of the joints.

        Uses the damped pseudo-inverse of the eef position Jacobian; the controller then sees a state it
        did not command, which is what a bump of the arm looks like.
        """
        import mujoco

        robot = self.env.robots[0]
        model, data = self.env.sim.model._model, self.env.sim.data._data
        idx = np.asarray(robot._ref_joint_pos_indexes)
        vidx = np.asarray(robot._ref_joint_vel_indexes)
        target = self.eef_pos() + np.asarray(offset, dtype=np.float64)
        for _ in range(5):
            jacp = np.zeros((3, model.nv))
            mujoco.mj_jacSite(model, data, jacp, None, robot.eef_site_id["right"])
            j = jacp[:, vidx]
            err = target - self.eef_pos()
            dq = j.T @ np.linalg.solve(j @ j.T + 1e-4 * np.eye(3), err)
            self.env.sim.data.qpos[idx] += dq
            self.env.sim.forward()
        self.env.sim.data.qvel[vidx] = 0.0
        self.env.sim.forward()
        # The OSC controller holds its last goal; re-anchor it so it does not yank the arm straight back.
        robot.composite_controller.reset()

    # ----------------------------------------------------------------- rendering / schema
    def frame(self, camera: str = "agentview", size: int = 256) -> np.ndarray:
        """An upright RGB frame for videos (needs render_video=True or cameras)."""
        check_cameras([camera], self.spec.name)
        if not self._render_video:
            raise ConfigError("this SimEnv was built without an offscreen renderer: pass render_video=True")
        img = self.env.sim.render(camera_name=camera, width=size, height=size)
        from robosuite import macros

        return np.ascontiguousarray(img[::-1] if macros.IMAGE_CONVENTION == "opengl" else img)

    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the stored observation keys (privileged expert keys left out)."""
        raw = self._last_raw or self.env._get_observations(force_update=True)
        obs = self._convert(raw)
        return {k: tuple(obs[k].shape) for k in self.obs_keys}

    def store_schema(self) -> Any:
        """The StoreSchema a store of this env's episodes needs."""
        return store_schema(self.spec, self.obs_shapes())

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def store_schema(spec: TaskSpec, shapes: Mapping[str, Sequence[int]]) -> Any:
    """StoreSchema for observations of these shapes (images are the keys ending in `_image`).

    A function of shapes alone so a sweep's parent process can create the store from what its
    workers sent back without building an environment of its own.
    """
    from robot_offrl.data import ActionSpace, KeySpec, StoreSchema

    keys = [
        KeySpec(k, "uint8", tuple(v), "rgb") if k.endswith("_image") else KeySpec(k, "float32", tuple(v), "lowdim")
        for k, v in shapes.items()
    ]
    if spec.action == "joint_position":
        # Joint bounds are the arm's (policy_node clamps to its joint_*_limits); the gripper is GRIP's.
        n = len(spec.joint_names)
        action = ActionSpace(
            names=[*spec.joint_names, GRIPPER_ACTION],
            units=["rad"] * n + ["normalized"],
            mode="absolute",
            low=[-math.inf] * n + [-1.0],
            high=[math.inf] * n + [1.0],
        )
    else:
        action = ActionSpace(
            names=list(ACTION_NAMES),
            units=["normalized"] * ACTION_DIM,
            mode="delta",
            low=[-1.0] * ACTION_DIM,
            high=[1.0] * ACTION_DIM,
        )
    return StoreSchema(
        obs=keys, action=action, control_rate_hz=float(spec.control_freq), robot=spec.robot, task=spec.name
    )


def make_env(
    task: str | TaskSpec,
    cameras: Sequence[str] | None = None,
    camera_size: int | None = None,
    horizon: int | None = None,
    render_video: bool = False,
    controller: str | None = None,
    kp: float | None = None,
) -> SimEnv:
    return SimEnv(task, cameras=cameras, camera_size=camera_size, horizon=horizon, render_video=render_video,
                  controller=controller, kp=kp)
