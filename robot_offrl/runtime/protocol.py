"""The policy interfaces every consumer drives, defined once: sim rollouts and sweeps, the ROS node.

``Policy`` is anything that acts one step at a time (a learned checkpoint, a scripted expert, a
noisy generator). ``PlanningPolicy`` is a policy that also states what it needs and how it plans:
``PolicyRuntime`` is one, and the ROS node and the sim sweep accept any object shaped like it (a
test double, a bring-up stub). Its ``cameras`` say which images it reads, so a sweep builds the
simulator's cameras from a typed attribute instead of guessing from key names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from robot_offrl.data import ActionSpace, KeySpec

# docs/contracts.md, "Observation and action naming": an image key is ``<camera>_image``.
IMAGE_KEY_SUFFIX = "_image"


@dataclass(frozen=True)
class Camera:
    """One camera a policy reads: its name (the image key without the suffix) and frame size."""

    name: str
    height: int
    width: int

    @property
    def key(self) -> str:
        return f"{self.name}{IMAGE_KEY_SUFFIX}"

    @classmethod
    def from_spec(cls, spec: KeySpec) -> Camera:
        return cls(spec.name.removesuffix(IMAGE_KEY_SUFFIX), int(spec.shape[0]), int(spec.shape[1]))


def cameras_of(obs_schema: Sequence[KeySpec]) -> tuple[Camera, ...]:
    """The cameras behind a schema's rgb keys, in schema order."""
    return tuple(Camera.from_spec(spec) for spec in obs_schema if spec.kind == "rgb")


@runtime_checkable
class Policy(Protocol):
    """Acts one step at a time on one observation (``dict[str, np.ndarray]`` with the schema's keys)."""

    def reset(self) -> None: ...

    def act(self, obs: Mapping[str, Any]) -> np.ndarray: ...


@runtime_checkable
class PlanningPolicy(Protocol):
    """A policy that states its inputs and outputs and plans a chunk of actions at once (what the ROS
    node drives; ``PolicyRuntime`` is also a ``Policy``, a test double of the node need not be).

    Optional extras the node uses when present: ``n_action_steps``, ``scored_actions`` and
    ``observe(obs)``, which adds a control period's observation to the history without planning."""

    obs_schema: Sequence[KeySpec]
    action_space: ActionSpace
    obs_horizon: int
    control_rate_hz: float

    @property
    def cameras(self) -> tuple[Camera, ...]: ...

    def reset(self) -> None: ...

    def plan(self, obs: Mapping[str, Any]) -> np.ndarray: ...
