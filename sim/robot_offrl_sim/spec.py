"""Task specifications read from configs/task/<name>.yaml (the Hydra group the trainer also reads).

Kept free of robosuite so a bad task name, region or camera is reported in milliseconds, before the
simulator is even imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from robot_offrl.errors import ConfigError
from robot_offrl_sim.regions import Region, check_on_table

# Cameras robosuite's single-arm table-top tasks define; anything else is a typo we can name early.
KNOWN_CAMERAS = ("agentview", "robot0_eye_in_hand", "frontview", "birdview", "sideview", "robot0_robotview")
LOWDIM_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object", "joint_pos")
# What a task's stored actions are: robosuite OSC_POSE deltas in [-1, 1] (the scripted experts' own
# space), or absolute joint positions + a [-1 open, 1 close] gripper (what policy_node's trajectory and
# forward modes send a real arm). tasks.SimEnv builds the matching controller.
ACTIONS = ("osc_pose", "joint_position")


def config_dir() -> Path:
    """configs/task of the config tree the trainer uses (``$ROBOT_OFFRL_CONFIGS`` or this checkout's)."""
    from robot_offrl.config import config_dir as configs_root

    return configs_root() / "task"


def available_tasks() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    env_name: str
    robot: str
    horizon: int
    control_freq: float
    cameras: tuple[str, ...]
    camera_size: int
    lowdim_keys: tuple[str, ...]
    image_keys: tuple[str, ...]
    object_joint: str
    origin: tuple[float, float]
    table: Region
    regions: Mapping[str, Region]
    object_pos_index: int = 0
    object_quat_index: int = 3
    goal: tuple[float, float, float] | None = None
    expert_steps: int = 100
    success_note: str = ""
    # robosuite observables concatenated into `object` instead of its `object-state` (which for Lift
    # and Can also holds gripper-to-object vectors a camera-less real arm cannot measure); () keeps it.
    object_state: tuple[str, ...] = ()
    expert: str = ""  # which scripted expert drives this task (a variant config reuses its base's)
    action: str = "osc_pose"  # one of ACTIONS
    joint_kp: float | None = None  # joint_position tasks: controller stiffness (None: tasks.DEFAULT_JOINT_KP)
    joint_names: tuple[str, ...] = ()  # joint_position tasks: arm joints, as the real arm's /joint_states names them
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    def region(self, name: str) -> Region:
        if name not in self.regions:
            raise ConfigError(
                f"task {self.name!r} has no region {name!r}; known: {sorted(self.regions)} "
                f"(configs/task/{self.name}.yaml)"
            )
        return self.regions[name]

    @property
    def narrow(self) -> Region:
        return self.region("narrow")


def check_cameras(cameras: tuple[str, ...] | list[str], task: str = "") -> tuple[str, ...]:
    unknown = [c for c in cameras if c not in KNOWN_CAMERAS]
    if unknown:
        raise ConfigError(
            f"unknown camera(s) {unknown}{f' for task {task!r}' if task else ''}; known: {list(KNOWN_CAMERAS)}"
        )
    return tuple(cameras)


def _require(raw: Mapping[str, object], key: str, path: Path) -> object:
    if key not in raw:
        raise ConfigError(f"{path}: missing key {key!r}")
    return raw[key]


def spec_from_mapping(raw: Mapping[str, object], path: Path) -> TaskSpec:
    name = str(_require(raw, "name", path))
    regions_raw = _require(raw, "regions", path)
    if not isinstance(regions_raw, Mapping) or not {"narrow", "wide"} <= set(regions_raw):
        raise ConfigError(f"{path}: regions must define at least 'narrow' and 'wide'")
    where = f" in {path}"
    regions = {str(k): Region.from_mapping(str(k), v, where) for k, v in regions_raw.items()}
    table = Region.from_mapping("table", _require(raw, "table", path), where)  # type: ignore[arg-type]
    for reg in regions.values():
        check_on_table(reg, table, name)
    if not regions["wide"].contains_region(regions["narrow"]):
        raise ConfigError(f"{path}: the wide region must contain the narrow region")
    origin = tuple(float(v) for v in _require(raw, "origin", path))  # type: ignore[attr-defined]
    goal_raw = raw.get("goal")
    goal = None if goal_raw is None else tuple(float(v) for v in goal_raw)  # type: ignore[attr-defined]
    cameras = check_cameras(list(raw.get("cameras") or []), name)  # type: ignore[call-overload]
    lowdim = tuple(str(k) for k in raw.get("lowdim_keys") or LOWDIM_KEYS)  # type: ignore[attr-defined]
    bad = [k for k in lowdim if k not in LOWDIM_KEYS]
    if bad:
        raise ConfigError(f"{path}: lowdim_keys {bad} are not sim observations; known: {list(LOWDIM_KEYS)}")
    horizon = int(_require(raw, "horizon", path))  # type: ignore[call-overload]
    if horizon < 1:
        raise ConfigError(f"{path}: horizon must be >= 1, got {horizon}")
    index = raw.get("object_pose_index") or {"pos": 0, "quat": 3}
    if not isinstance(index, Mapping) or not {"pos", "quat"} <= set(index):
        raise ConfigError(f"{path}: object_pose_index must be {{pos: i, quat: j}}, got {index!r}")
    object_state = raw.get("object_state") or ()
    if isinstance(object_state, str) or not all(isinstance(k, str) for k in object_state):  # type: ignore[attr-defined]
        raise ConfigError(f"{path}: object_state must be a list of robosuite observable names, got {object_state!r}")
    action = str(raw.get("action") or "osc_pose")
    if action not in ACTIONS:
        raise ConfigError(f"{path}: action must be one of {list(ACTIONS)}, got {action!r}")
    joint_kp = raw.get("joint_kp")
    if joint_kp is not None and not float(joint_kp) > 0:  # type: ignore[arg-type]
        raise ConfigError(f"{path}: joint_kp must be > 0, got {joint_kp!r}")
    if "joint_pos" in lowdim and action != "joint_position":
        raise ConfigError(f"{path}: lowdim key joint_pos goes with action: joint_position")
    joint_names = tuple(str(n) for n in raw.get("joint_names") or ())  # type: ignore[attr-defined]
    if action == "joint_position" and not joint_names:
        raise ConfigError(f"{path}: action joint_position needs joint_names (the arm's joints, in order)")
    return TaskSpec(
        name=name,
        env_name=str(_require(raw, "env_name", path)),
        robot=str(raw.get("robot", "Panda")),
        horizon=horizon,
        control_freq=float(raw.get("control_freq", 20)),  # type: ignore[arg-type]
        cameras=cameras,
        camera_size=int(raw.get("camera_size", 84)),  # type: ignore[call-overload]
        lowdim_keys=lowdim,
        image_keys=tuple(str(k) for k in raw.get("image_keys") or ()),  # type: ignore[attr-defined]
        object_joint=str(_require(raw, "object_joint", path)),
        origin=(origin[0], origin[1]),
        table=table,
        regions=regions,
        object_pos_index=int(index["pos"]),
        object_quat_index=int(index["quat"]),
        goal=None if goal is None else (goal[0], goal[1], goal[2]),
        expert_steps=int(raw.get("expert_steps", 100)),  # type: ignore[call-overload]
        success_note=str(raw.get("success", "")),
        object_state=tuple(object_state),  # type: ignore[arg-type]
        expert=str(raw.get("expert") or name),
        action=action,
        joint_kp=None if joint_kp is None else float(joint_kp),  # type: ignore[arg-type]
        joint_names=joint_names,
        raw=dict(raw),
    )


def _read_task_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, object]:
    """The task file's mapping with its Hydra ``defaults: [<base task>, _self_]`` merged in.

    A variant (lift_pose: Lift with another observation) names its base task the way Hydra reads it
    for the trainer, so both loaders see the same values and each is written once. As in Hydra with
    ``_self_`` last, the variant's keys win: mappings merge key by key, anything else is replaced.
    """
    if path in seen:
        raise ConfigError(f"{path}: task defaults form a cycle ({' -> '.join(p.stem for p in (*seen, path))})")
    with open(path) as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw = dict(raw)
    defaults = raw.pop("defaults", [])
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigError(f"{path}: defaults must be a list of task names and _self_, got {defaults!r}")
    bases = [d for d in defaults if d != "_self_"]
    if defaults and defaults[-1] != "_self_":
        raise ConfigError(f"{path}: defaults must end with _self_ (the variant's own keys win), got {defaults}")
    merged: dict[str, object] = {}
    for base in bases:
        base_path = path.parent / f"{base}.yaml"
        if not base_path.is_file():
            raise ConfigError(f"{path}: defaults names task {base!r}, but {base_path} does not exist")
        _merge_into(merged, _read_task_yaml(base_path, (*seen, path)))
    _merge_into(merged, raw)
    return merged


def _merge_into(target: dict[str, object], overlay: Mapping[str, object]) -> None:
    for key, value in overlay.items():
        current = target.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged = dict(current)
            _merge_into(merged, value)
            target[key] = merged
        else:
            target[key] = value


@lru_cache(maxsize=16)
def _load(path: Path) -> TaskSpec:
    return spec_from_mapping(_read_task_yaml(path), path)


def load_task(name: str) -> TaskSpec:
    """A task by name (lift, can, square) or by the path of a task YAML file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return _load(candidate.resolve())
    path = config_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown task {name!r}; known tasks: {available_tasks()} (from {config_dir()})")
    return _load(path)
