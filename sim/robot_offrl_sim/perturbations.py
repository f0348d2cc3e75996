"""Scripted perturbations: push the object or the arm at a chosen step, so recovery can be measured.

A perturbation is data (kind, step, offset), parsed from a short CLI form, applied by the rollout runner
and written back into results/episode attrs with what actually happened (where the object ended up,
how far the hand really moved).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError

KINDS = ("object", "arm", "arm-nudge")


@dataclass(frozen=True)
class Perturbation:
    """object: offset (dx, dy[, dyaw]) of the object; arm: eef offset (dx, dy, dz) in metres.

    `arm` pushes the hand with `push_steps` forced actions (the policy is not queried meanwhile);
    `arm-nudge` jumps the joints so the hand is displaced in one control step.
    """

    kind: str
    step: int
    offset: tuple[float, ...]
    push_steps: int = 8

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"perturbation kind {self.kind!r} unknown; use one of {list(KINDS)}")
        if self.step < 0:
            raise ConfigError(f"perturbation step must be >= 0, got {self.step}")
        want = (2, 3) if self.kind == "object" else (3,)
        if len(self.offset) not in want:
            raise ConfigError(
                f"{self.kind} perturbation needs {' or '.join(map(str, want))} offsets, got {list(self.offset)}"
            )
        if not all(np.isfinite(self.offset)):
            raise ConfigError(f"perturbation offset must be finite, got {list(self.offset)}")
        if self.push_steps < 1:
            raise ConfigError(f"push_steps must be >= 1, got {self.push_steps}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["offset"] = list(self.offset)
        return d

    def to_text(self) -> str:
        """The command-line / ROS-parameter form parse_perturbation reads back exactly (push_steps aside)."""
        return f"{self.kind}:{','.join(repr(float(v)) for v in self.offset)}@{self.step}"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Perturbation:
        try:
            return cls(
                kind=str(raw["kind"]),
                step=int(raw["step"]),
                offset=tuple(float(v) for v in raw["offset"]),
                push_steps=int(raw.get("push_steps", 8)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"perturbation needs kind, step, offset; got {dict(raw)!r}") from err


def parse_perturbation(text: str) -> Perturbation:
    """'object:0.05,0@40', 'object:0.05,0,0.5@40', 'arm:0,0.05,0@30', 'arm-nudge:0,0,0.05@30'."""
    try:
        kind, rest = text.split(":", 1)
        values, step = rest.split("@", 1)
        offset = tuple(float(v) for v in values.split(","))
        return Perturbation(kind=kind.strip(), step=int(step), offset=offset)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"cannot parse perturbation {text!r}; use object:dx,dy[,dyaw]@step or arm:dx,dy,dz@step "
            "(or arm-nudge:dx,dy,dz@step)"
        ) from err


@dataclass
class ArmPush:
    """Forced actions that drive the hand to start + offset: an external push the policy must undo."""

    target: np.ndarray
    steps_left: int
    gripper: float
    record: dict[str, Any] = field(default_factory=dict)

    def action(self, eef_pos: np.ndarray) -> np.ndarray:
        a = np.zeros(7, dtype=np.float32)
        a[:3] = np.clip((self.target - eef_pos) * 15.0, -1.0, 1.0)
        a[6] = self.gripper
        self.steps_left -= 1
        return a
