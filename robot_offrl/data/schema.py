"""What a store holds: observation keys, the action space and the robot/task it was recorded on.

The schema is written once, at creation, into the store's attributes. Recorders, the trainer and the
runtime all read it from there (and the checkpoint copies it), so the meaning of every column travels
with the data instead of living in someone's head.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from robot_offrl.data.errors import SchemaError

FORMAT_NAME = "robot_offrl.episodes"
FORMAT_VERSION = 1

KINDS: tuple[str, ...] = ("rgb", "depth", "lowdim")
SOURCES: tuple[str, ...] = (
    "teleop",
    "play",
    "failed",
    "partial",
    "suboptimal",
    "policy_rollout",
    "scripted",
    "imported",
)
ACTION_MODES: tuple[str, ...] = ("absolute", "delta")
# dtypes a key may declare; images are uint8 (rgb) or uint8/uint16/float32 (depth), low-dim is float32.
ALLOWED_DTYPES: dict[str, tuple[str, ...]] = {
    "rgb": ("uint8",),
    "depth": ("uint8", "uint16", "float32"),
    "lowdim": ("float32",),
}
# Array names reserved by the store layout, so an observation key cannot shadow them.
RESERVED_KEYS: frozenset[str] = frozenset({"actions", "index", "obs"})

Kind = Literal["rgb", "depth", "lowdim"]


@dataclass(frozen=True)
class KeySpec:
    """One observation key: name, per-step dtype and shape, and what kind of signal it is."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    kind: Kind

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name or self.name.startswith("."):
            raise SchemaError(f"observation key name {self.name!r} must be a non-empty string without '/'")
        if self.name in RESERVED_KEYS:
            raise SchemaError(f"observation key name '{self.name}' is reserved; rename the key")
        if self.kind not in KINDS:
            raise SchemaError(f"key '{self.name}': kind {self.kind!r} is not one of {', '.join(KINDS)}")
        object.__setattr__(self, "dtype", str(np.dtype(self.dtype)))
        if self.dtype not in ALLOWED_DTYPES[self.kind]:
            raise SchemaError(
                f"key '{self.name}': dtype {self.dtype} is not allowed for kind '{self.kind}' "
                f"(use {' or '.join(ALLOWED_DTYPES[self.kind])})"
            )
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError) as err:
            raise SchemaError(f"key '{self.name}': shape {self.shape!r} is not a tuple of ints") from err
        if any(s <= 0 for s in shape):
            raise SchemaError(f"key '{self.name}': shape {shape} must have positive sizes")
        if self.kind == "lowdim" and len(shape) != 1:
            raise SchemaError(f"key '{self.name}': a lowdim key has shape (D,), got {shape}")
        if self.kind == "rgb" and (len(shape) != 3 or shape[2] != 3):
            raise SchemaError(f"key '{self.name}': an rgb key has shape (H, W, 3), got {shape}")
        if self.kind == "depth" and len(shape) not in (2, 3):
            raise SchemaError(f"key '{self.name}': a depth key has shape (H, W) or (H, W, 1), got {shape}")
        object.__setattr__(self, "shape", shape)

    @property
    def is_image(self) -> bool:
        return self.kind in ("rgb", "depth")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "kind": self.kind}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeySpec:
        try:
            return cls(str(data["name"]), str(data["dtype"]), tuple(data["shape"]), data["kind"])
        except KeyError as err:
            raise SchemaError(f"observation key entry {dict(data)!r} lacks field {err}") from err


@dataclass(frozen=True)
class ActionSpace:
    """Names, units, absolute-vs-delta and bounds of the action vector, so a policy knows what it commands."""

    names: list[str]
    units: list[str]
    mode: Literal["absolute", "delta"]
    low: list[float]
    high: list[float]

    def __post_init__(self) -> None:
        names = [str(n) for n in self.names]
        units = [str(u) for u in self.units]
        if not names:
            raise SchemaError("action space needs at least one action name")
        if len(set(names)) != len(names):
            raise SchemaError(f"action names {names} contain duplicates")
        if self.mode not in ACTION_MODES:
            raise SchemaError(f"action mode {self.mode!r} is not 'absolute' or 'delta'")
        dim = len(names)
        for label, values in (("units", units), ("low", self.low), ("high", self.high)):
            if len(values) != dim:
                raise SchemaError(f"action {label} has {len(values)} entries but there are {dim} action names")
        low = [float(v) for v in self.low]
        high = [float(v) for v in self.high]
        for name, lo, hi in zip(names, low, high, strict=True):
            if math.isnan(lo) or math.isnan(hi) or lo > hi:
                raise SchemaError(f"action '{name}': bounds low={lo} high={hi} are not an interval")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def dim(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        # JSON has no infinity: unbounded actions are written as null.
        def enc(v: float) -> float | None:
            return None if math.isinf(v) else v

        return {
            "names": list(self.names),
            "units": list(self.units),
            "mode": self.mode,
            "low": [enc(v) for v in self.low],
            "high": [enc(v) for v in self.high],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionSpace:
        try:
            low = [-math.inf if v is None else v for v in data["low"]]
            high = [math.inf if v is None else v for v in data["high"]]
            return cls(list(data["names"]), list(data["units"]), data["mode"], low, high)
        except KeyError as err:
            raise SchemaError(f"action space {dict(data)!r} lacks field {err}") from err

    @classmethod
    def unbounded(cls, dim: int, mode: Literal["absolute", "delta"] = "delta") -> ActionSpace:
        """For imports whose bounds are unknown: names a0.., unit 'unknown', infinite bounds."""
        return cls(
            [f"a{i}" for i in range(dim)], ["unknown"] * dim, mode, [-math.inf] * dim, [math.inf] * dim
        )


@dataclass(frozen=True)
class StoreSchema:
    """Everything a reader needs to interpret a store's arrays."""

    obs: list[KeySpec]
    action: ActionSpace
    control_rate_hz: float
    robot: str
    task: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        obs = [k if isinstance(k, KeySpec) else KeySpec.from_dict(k) for k in self.obs]
        if not obs:
            raise SchemaError("schema needs at least one observation key")
        names = [k.name for k in obs]
        if len(set(names)) != len(names):
            raise SchemaError(f"observation keys {names} contain duplicates")
        rate = float(self.control_rate_hz)
        if not math.isfinite(rate) or rate <= 0:
            raise SchemaError(f"control_rate_hz must be a positive number, got {self.control_rate_hz!r}")
        object.__setattr__(self, "obs", obs)
        object.__setattr__(self, "control_rate_hz", rate)
        object.__setattr__(self, "robot", str(self.robot))
        object.__setattr__(self, "task", str(self.task))

    @property
    def obs_keys(self) -> list[str]:
        return [k.name for k in self.obs]

    def key(self, name: str) -> KeySpec:
        for spec in self.obs:
            if spec.name == name:
                return spec
        raise SchemaError(f"observation key '{name}' is not in the schema (keys: {', '.join(self.obs_keys)})")

    def image_keys(self) -> list[str]:
        return [k.name for k in self.obs if k.is_image]

    def lowdim_keys(self) -> list[str]:
        return [k.name for k in self.obs if not k.is_image]

    def to_dict(self) -> dict[str, Any]:
        return {
            "obs": [k.to_dict() for k in self.obs],
            "action": self.action.to_dict(),
            "control_rate_hz": self.control_rate_hz,
            "robot": self.robot,
            "task": self.task,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreSchema:
        try:
            return cls(
                obs=[KeySpec.from_dict(k) for k in data["obs"]],
                action=ActionSpace.from_dict(data["action"]),
                control_rate_hz=data["control_rate_hz"],
                robot=data["robot"],
                task=data["task"],
                extra=dict(data.get("extra", {})),
            )
        except KeyError as err:
            raise SchemaError(f"schema lacks field {err}") from err
        except TypeError as err:
            raise SchemaError(f"schema is malformed: {err}") from err

    def differences(self, other: StoreSchema) -> list[str]:
        """Human-readable list of what differs; empty when two stores can be merged."""
        diffs: list[str] = []
        mine = {k.name: k for k in self.obs}
        theirs = {k.name: k for k in other.obs}
        for name in sorted(set(mine) | set(theirs)):
            if name not in theirs:
                diffs.append(f"observation key '{name}' only in the first store")
            elif name not in mine:
                diffs.append(f"observation key '{name}' only in the second store")
            elif mine[name] != theirs[name]:
                a, b = mine[name], theirs[name]
                diffs.append(
                    f"observation key '{name}': {a.dtype}{list(a.shape)} {a.kind} vs {b.dtype}{list(b.shape)} {b.kind}"
                )
        if self.action != other.action:
            diffs.append(f"action space: {self.action.to_dict()} vs {other.action.to_dict()}")
        for attr in ("control_rate_hz", "robot", "task"):
            if getattr(self, attr) != getattr(other, attr):
                diffs.append(f"{attr}: {getattr(self, attr)!r} vs {getattr(other, attr)!r}")
        return diffs


def check_source(source: str, *, episode: int | str | None = None) -> str:
    if source not in SOURCES:
        where = f"episode {episode}: " if episode is not None else ""
        raise SchemaError(f"{where}source {source!r} is not one of {', '.join(SOURCES)}")
    return source


def check_success(success: object, *, episode: int | str | None = None) -> bool | None:
    if success is None or isinstance(success, bool | np.bool_):
        return None if success is None else bool(success)
    where = f"episode {episode}: " if episode is not None else ""
    raise SchemaError(f"{where}success must be True, False or None (unknown), got {success!r}")


def infer_keyspec(name: str, sample: np.ndarray) -> KeySpec:
    """Guess a key's kind from one step of data, for importers (uint8 with 3 channels is an image)."""
    sample = np.asarray(sample)
    if sample.dtype == np.uint8 and sample.ndim == 3 and sample.shape[2] == 3:
        return KeySpec(name, "uint8", sample.shape, "rgb")
    if "depth" in name and sample.ndim in (2, 3):
        dtype = str(sample.dtype) if str(sample.dtype) in ALLOWED_DTYPES["depth"] else "float32"
        return KeySpec(name, dtype, sample.shape, "depth")
    if sample.ndim == 0:
        return KeySpec(name, "float32", (1,), "lowdim")
    if sample.ndim == 1:
        return KeySpec(name, "float32", sample.shape, "lowdim")
    raise SchemaError(
        f"key '{name}': cannot infer the kind of a {sample.dtype} array with per-step shape {sample.shape}; "
        "only uint8 (H, W, 3) images, depth maps and 1-D vectors are supported"
    )
