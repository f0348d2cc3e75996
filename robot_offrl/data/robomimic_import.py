"""Import robomimic HDF5 datasets (data/demo_N/{obs, actions, rewards, dones, states}, mask/<filter>).

robomimic's own conversion scripts need mujoco_py, so the file is read with h5py directly. Filter keys
named as expert masks become ``expert=True``; every other demo is ``expert=False``; all are
``source="imported"``. robomimic already stores images upright (its robosuite wrapper flips them), which
is this project's convention, so frames are copied as they are.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_offrl.data.backend import Location
from robot_offrl.data.errors import (
    EpisodeValidationError,
    SchemaError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
)
from robot_offrl.data.schema import ActionSpace, KeySpec, StoreSchema, infer_keyspec
from robot_offrl.data.staging import build_beside
from robot_offrl.data.store import EpisodeStore

OSC_POSE_NAMES = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]
# robosuite's default control rate, used when env_args does not say.
DEFAULT_CONTROL_FREQ = 20.0


def _demo_sort_key(name: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else 1 << 62, name)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)


def _env_args(data_group: Any, file: str) -> dict[str, Any]:
    raw = data_group.attrs.get("env_args")
    if raw is None:
        return {}
    try:
        parsed = json.loads(_text(raw))
    except json.JSONDecodeError as err:
        raise StoreError(f"{file}: data attribute env_args is not valid JSON ({err})") from err
    return parsed if isinstance(parsed, dict) else {}


def _controller_type(env_kwargs: dict[str, Any]) -> tuple[str | None, bool]:
    """robosuite <=1.4 keeps the arm controller at the top, 1.5 under body_parts/right."""
    cfg = env_kwargs.get("controller_configs") or {}
    if isinstance(cfg, list):
        cfg = cfg[0] if cfg else {}
    arm = (cfg.get("body_parts") or {}).get("right") or cfg
    return arm.get("type"), bool(arm.get("control_delta", True))


def action_space_from_env(env_args: dict[str, Any], dim: int) -> ActionSpace:
    kwargs = env_args.get("env_kwargs") or {}
    controller, delta = _controller_type(kwargs)
    mode = "delta" if delta else "absolute"
    if controller == "OSC_POSE" and dim == 7:
        return ActionSpace(OSC_POSE_NAMES, ["normalized"] * 7, mode, [-1.0] * 7, [1.0] * 7)
    return ActionSpace.unbounded(dim, mode)


def _control_rate(kwargs: dict[str, Any], file: str) -> float:
    value = kwargs.get("control_freq", DEFAULT_CONTROL_FREQ)
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise StoreError(
            f"{file}: env_args.env_kwargs.control_freq is {value!r}, not a number (control steps per second)"
        ) from None


def check_demos(file: str, data_group: Any, demo_names: Sequence[str]) -> None:
    """Every demo has obs and 2-D actions, and the same observation keys and action size as the first.

    Checked before anything is written: the schema comes from the first demo, so a key that only later
    demos have would otherwise be dropped without a word, and a key they lack would fail halfway.
    """
    first_keys: set[str] = set()
    action_dim: int | None = None
    for name in demo_names:
        demo = data_group[name]
        if "obs" not in demo or "actions" not in demo:
            raise EpisodeValidationError(
                f"{file}: lacks 'obs' or 'actions'; not a robomimic dataset with observations", episode=name
            )
        shape = tuple(demo["actions"].shape)
        if len(shape) != 2:
            raise EpisodeValidationError(
                f"{file}: actions have shape {shape}; robomimic actions are (T, action_dim)", episode=name,
                key="actions",
            )
        keys = set(demo["obs"])
        if name == demo_names[0]:
            first_keys, action_dim = keys, shape[1]
            continue
        if shape[1] != action_dim:
            raise EpisodeValidationError(
                f"{file}: actions have {shape[1]} dimensions but {demo_names[0]}'s have {action_dim}",
                episode=name, key="actions",
            )
        extra, missing = sorted(keys - first_keys), sorted(first_keys - keys)
        if extra:
            raise EpisodeValidationError(
                f"{file}: observation key first appears in this demo ({demo_names[0]} lacks it); every demo "
                "must have the same observation keys", episode=name, key=extra[0],
            )
        if missing:
            raise EpisodeValidationError(
                f"{file}: observation key is missing from this demo ({demo_names[0]} has it); every demo "
                "must have the same observation keys", episode=name, key=missing[0],
            )


def infer_schema(file: str, data_group: Any, first_demo: Any) -> StoreSchema:
    env_args = _env_args(data_group, file)
    kwargs = env_args.get("env_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise StoreError(f"{file}: env_args.env_kwargs is {type(kwargs).__name__}, not an object")
    if "obs" not in first_demo or "actions" not in first_demo:
        raise StoreError(f"{file}: {first_demo.name} lacks 'obs' or 'actions'; not a robomimic dataset with observations")
    specs: list[KeySpec] = []
    for key in first_demo["obs"]:
        dataset = first_demo["obs"][key]
        if dataset.shape[0] == 0:
            raise EpisodeValidationError("empty observation array", episode=first_demo.name, key=key)
        specs.append(infer_keyspec(key, dataset[0]))
    robots = kwargs.get("robots", "unknown")
    robot = ",".join(robots) if isinstance(robots, list) else str(robots)
    try:
        return StoreSchema(
            obs=specs,
            action=action_space_from_env(env_args, int(first_demo["actions"].shape[1])),
            control_rate_hz=_control_rate(kwargs, file),
            robot=robot,
            task=str(env_args.get("env_name", "unknown")),
            extra={"imported_from": os.path.basename(file), "env_args": env_args},
        )
    except SchemaError as err:
        raise StoreError(f"{file}: {err}") from err


def _masks(h5: Any, names: Sequence[str], file: str, demos: set[str]) -> set[str]:
    available = sorted(h5["mask"]) if "mask" in h5 else []
    expert: set[str] = set()
    for name in names:
        if name not in available:
            raise StoreError(
                f"{file}: filter key '{name}' not found under mask/ (available: {', '.join(available) or 'none'})"
            )
        members = {_text(v) for v in np.asarray(h5["mask"][name][()]).ravel()}
        unknown = sorted(members - demos)
        if unknown:
            raise StoreError(f"{file}: mask/{name} names demos that do not exist: {', '.join(unknown[:5])}")
        expert |= members
    return expert


def _success(demo: Any) -> bool | None:
    """Last reward > 0 means success; robomimic's dones also mark time-outs, so alone they say nothing."""
    if "rewards" in demo and demo["rewards"].shape[0] > 0:
        return bool(np.asarray(demo["rewards"][-1]) > 0)
    return None


def import_robomimic(
    file: str | os.PathLike[str],
    out: str,
    expert_masks: Sequence[str] = (),
    *,
    durable: bool = False,
) -> EpisodeStore:
    """Convert a robomimic HDF5 into a new store at ``out``; all or nothing, also when killed midway.

    The store is built beside ``out`` and renamed into place once every demo is in (staging.py).
    """
    import h5py

    file = os.fspath(file)
    if not Path(file).is_file():
        raise StoreNotFoundError(f"{file}: no such file; pass the path of a robomimic .hdf5")
    if Location.parse(out).exists():
        raise StoreExistsError(f"{out}: already exists; import writes a new store, pick another path")
    try:
        h5 = h5py.File(file, "r")
    except OSError as err:
        raise StoreError(f"{file}: cannot be read as HDF5 ({err})") from err
    try:
        if "data" not in h5:
            raise StoreError(f"{file}: has no 'data' group; not a robomimic dataset")
        data = h5["data"]
        demo_names = sorted(data.keys(), key=_demo_sort_key)
        if not demo_names:
            raise StoreError(f"{file}: data/ holds no demos")
        expert = _masks(h5, expert_masks, file, set(demo_names))
        check_demos(file, data, demo_names)
        schema = infer_schema(file, data, data[demo_names[0]])
        # The new store's handle is closed (its lock freed) before the rename and on any failure.
        with build_beside(out, "data import-robomimic") as path, EpisodeStore.create(path, schema, durable=durable) as store:
            _import_demos(file, data, demo_names, expert, store)
    finally:
        h5.close()
    return EpisodeStore.open(out, mode="r+", durable=durable)


def _import_demos(file: str, data: Any, demo_names: Sequence[str], expert: set[str], store: EpisodeStore) -> None:
    """Append every demo in order; any bad one aborts the import (the caller discards the build)."""
    for name in demo_names:
        demo = data[name]
        obs = {key: demo["obs"][key][()] for key in store.schema.obs_keys}
        attrs: dict[str, Any] = {"demo": name, "source_file": os.path.basename(file)}
        for attr in ("model_file", "num_samples"):
            if attr in demo.attrs:
                value = demo.attrs[attr]
                attrs[attr] = int(value) if attr == "num_samples" else _text(value)
        if "states" in demo and demo["states"].shape[0] > 0:
            attrs["initial_state"] = np.asarray(demo["states"][0], dtype=np.float64).tolist()
        if "ep_meta" in demo.attrs:
            attrs["ep_meta"] = _text(demo.attrs["ep_meta"])
        try:
            store.append_episode(
                obs,
                demo["actions"][()],
                expert=name in expert,
                source="imported",
                success=_success(demo),
                attrs=attrs,
            )
        except EpisodeValidationError as err:
            raise EpisodeValidationError(f"{file}: {err.detail}", episode=name, key=err.key) from err
