"""Latest sensor messages -> one observation step in the checkpoint's schema.

The checkpoint's observation schema decides which inputs are required; this module checks at
configure time that the node's parameters can provide every key (naming the parameter to set
when not), and at run time builds ``dict[key, array]`` exactly as the training data had it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError, ObservationError

from .image_codec import decode_image, fit_image
from .params import (
    EEF_POS_KEY,
    EEF_QUAT_KEY,
    GRIPPER_QPOS_KEY,
    JOINT_POS_KEY,
    JOINT_VEL_KEY,
    NodeConfig,
)
from .safety import match_names

JOINT_INPUT = "joint_states"
POSE_INPUT = "ee_pose"
# Low-dim keys a real arm can provide, and the input each one comes from.
LOWDIM_SOURCES = {
    JOINT_POS_KEY: JOINT_INPUT,
    JOINT_VEL_KEY: JOINT_INPUT,
    GRIPPER_QPOS_KEY: JOINT_INPUT,
    EEF_POS_KEY: POSE_INPUT,
    EEF_QUAT_KEY: POSE_INPUT,
}


class ObservationAssembler:
    """Keeps the newest joint state, pose and camera message; builds observations on demand.

    Images are decoded at build time, not on arrival, so a 30 Hz camera costs nothing for the
    frames a 10 Hz policy never looks at.
    """

    def __init__(self, obs_schema: Sequence[Any], cfg: NodeConfig) -> None:
        self._schema = list(obs_schema)
        self._joint_names = cfg.joint_names
        self._gripper_names = cfg.gripper_joint_names
        self._topic_of_key = dict(zip(cfg.camera_keys, cfg.camera_topics, strict=True))
        self.timeouts: dict[str, float] = {JOINT_INPUT: cfg.joint_state_timeout_s}
        rgb_keys = [s.name for s in self._schema if s.kind == "rgb"]
        for spec in self._schema:
            self._check_spec(spec, cfg)
            if spec.kind == "rgb":
                self.timeouts[self._topic_of_key[spec.name]] = cfg.image_timeout_s
            elif LOWDIM_SOURCES[spec.name] == POSE_INPUT:
                self.timeouts[POSE_INPUT] = cfg.pose_timeout_s
        unused = [k for k in cfg.camera_keys if k not in rgb_keys]
        if unused:
            raise ConfigError(
                f"camera_keys {unused} are not image keys of this checkpoint (it uses {rgb_keys}); "
                "remove them or fix the topic->key mapping"
            )
        if cfg.ee_pose_topic:
            self.timeouts.setdefault(POSE_INPUT, cfg.pose_timeout_s)
        self._lock = threading.Lock()
        self._joint_pos: np.ndarray | None = None
        self._joint_vel: np.ndarray | None = None
        self._gripper_pos: np.ndarray | None = None
        self._pose: tuple[np.ndarray, np.ndarray] | None = None
        self._images: dict[str, Any] = {}
        self._stamps: dict[str, float] = {}
        self._index_cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray | None]] = {}

    def _check_spec(self, spec: Any, cfg: NodeConfig) -> None:
        shape = tuple(spec.shape)
        if spec.kind == "rgb":
            if spec.name not in self._topic_of_key:
                raise ConfigError(
                    f"the checkpoint needs image key {spec.name!r} but camera_keys {list(cfg.camera_keys)} "
                    "does not map any camera topic to it; add the topic to camera_topics and the key to camera_keys"
                )
            return
        if spec.kind != "lowdim" or spec.name not in LOWDIM_SOURCES:
            raise ConfigError(
                f"observation key {spec.name!r} (kind {spec.kind!r}) cannot be provided on a real arm; "
                f"supported low-dim keys: {sorted(LOWDIM_SOURCES)}, images: kind 'rgb'"
            )
        expected = {
            JOINT_POS_KEY: (len(cfg.joint_names),),
            JOINT_VEL_KEY: (len(cfg.joint_names),),
            GRIPPER_QPOS_KEY: (len(cfg.gripper_joint_names),),
            EEF_POS_KEY: (3,),
            EEF_QUAT_KEY: (4,),
        }[spec.name]
        if shape != expected:
            raise ConfigError(
                f"observation {spec.name!r} has shape {shape} in the checkpoint but the parameters give "
                f"{expected}; check joint_names / gripper_joint_names"
            )
        if LOWDIM_SOURCES[spec.name] == POSE_INPUT and not cfg.ee_pose_topic:
            raise ConfigError(f"the checkpoint needs {spec.name!r}: set ee_pose_topic to a PoseStamped topic")

    @property
    def camera_topics(self) -> list[str]:
        return [t for t in self.timeouts if t not in (JOINT_INPUT, POSE_INPUT)]

    def on_joint_state(self, names: Sequence[str], positions: Sequence[float],
                       velocities: Sequence[float], stamp_s: float) -> None:
        """Store the arm (and gripper) joints by name; raises a UserError for a missing joint or a NaN/inf position."""
        key = tuple(names)
        cached = self._index_cache.get(key)
        if cached is None:
            arm = match_names(key, self._joint_names, "/joint_states")
            grip = match_names(key, self._gripper_names, "/joint_states") if self._gripper_names else None
            cached = self._index_cache[key] = (arm, grip)
        arm, grip = cached
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape != (len(key),):
            raise ObservationError(f"/joint_states has {len(key)} names but {pos.shape[0]} positions")
        vel = np.asarray(velocities, dtype=np.float64)
        arm_pos = pos[arm]
        if not np.all(np.isfinite(arm_pos)):
            # Never stored: the last finite positions stay the ones a hold commands.
            bad = [f"{self._joint_names[i]}={arm_pos[i]}" for i in np.flatnonzero(~np.isfinite(arm_pos))]
            raise ObservationError(f"/joint_states has non-finite positions ({', '.join(bad)}); ignoring the message")
        with self._lock:
            self._joint_pos = arm_pos
            self._joint_vel = vel[arm] if vel.shape == pos.shape else np.zeros(len(arm))
            self._gripper_pos = pos[grip] if grip is not None else None
            self._stamps[JOINT_INPUT] = stamp_s

    def on_pose(self, position: Sequence[float], quat_xyzw: Sequence[float], stamp_s: float) -> None:
        with self._lock:
            self._pose = (np.asarray(position, dtype=np.float64), np.asarray(quat_xyzw, dtype=np.float64))
            self._stamps[POSE_INPUT] = stamp_s

    def on_image(self, topic: str, msg: Any, stamp_s: float) -> None:
        with self._lock:
            self._images[topic] = msg
            self._stamps[topic] = stamp_s

    def joint_positions(self) -> np.ndarray | None:
        """The newest measured arm positions; always finite (non-finite messages are refused)."""
        with self._lock:
            return None if self._joint_pos is None else self._joint_pos.copy()

    def ee_position(self) -> np.ndarray | None:
        with self._lock:
            return None if self._pose is None else self._pose[0].copy()

    def build(self) -> tuple[dict[str, np.ndarray], float]:
        """One observation step and its time stamp (the oldest of the inputs it used)."""
        with self._lock:
            images = dict(self._images)
            stamps = dict(self._stamps)
            joint_pos, joint_vel, grip, pose = self._joint_pos, self._joint_vel, self._gripper_pos, self._pose
        obs: dict[str, np.ndarray] = {}
        for spec in self._schema:
            source = self._topic_of_key[spec.name] if spec.kind == "rgb" else LOWDIM_SOURCES[spec.name]
            if source not in stamps:
                raise ObservationError(f"observation {spec.name!r}: nothing received yet on {source}")
            if spec.kind == "rgb":
                value = fit_image(decode_image(images[source], source), tuple(spec.shape))
            else:
                value = {
                    JOINT_POS_KEY: joint_pos,
                    JOINT_VEL_KEY: joint_vel,
                    GRIPPER_QPOS_KEY: grip,
                    EEF_POS_KEY: None if pose is None else pose[0],
                    EEF_QUAT_KEY: None if pose is None else pose[1],
                }[spec.name].astype(np.float32)
                if not np.all(np.isfinite(value)):
                    raise ObservationError(f"observation {spec.name!r} from {source} contains NaN/inf: {value}")
            obs[spec.name] = value
        used = {self._topic_of_key[s.name] if s.kind == "rgb" else LOWDIM_SOURCES[s.name] for s in self._schema}
        return obs, min(stamps[s] for s in used)
