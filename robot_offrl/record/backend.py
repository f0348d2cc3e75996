"""The robot as the record loop sees it: a back end that produces one step per control tick.

A small abstract base class rather than a protocol, so a new back end (another simulator, another
robot driver) learns from the class what it must provide: a schema, a way to start an episode and
the next step. The rest has a do-nothing default that suits a real arm (no scenes to choose, no
success detector, nothing to refresh while idle).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_offrl.data import StoreSchema


@dataclass(frozen=True)
class Step:
    """One recorded time step: the observation before the action, and the action commanded."""

    obs: Mapping[str, np.ndarray]
    action: np.ndarray


@dataclass(frozen=True)
class Refused:
    """A tick with no usable step (e.g. a topic's newest message is older than one control period)."""

    reason: str


@dataclass(frozen=True)
class DeviceReset:
    """The input device asked for a reset (robosuite keyboard ``q``, SpaceMouse right button)."""


StepOutcome = Step | Refused | DeviceReset


class RecordBackend(ABC):
    """What the record loop needs from a simulator or a robot."""

    control_rate_hz: float
    max_steps: int | None = None  # an episode stops (save prompt opens) at this length; None: no limit

    @abstractmethod
    def schema(self) -> StoreSchema:
        """The store schema every step of this back end fits (checked against the store at start)."""

    @abstractmethod
    def begin_episode(self) -> None:
        """Recording starts now (reset the device's input, note the start time, ...)."""

    @abstractmethod
    def step(self) -> StepOutcome:
        """Block for at most one control period and return this tick's step, refusal or reset request."""

    def new_scene(self) -> None:
        """Next initial condition (sim); a real arm has none to choose."""
        return None  # optional: a do-nothing default, not an abstract method

    def replay_scene(self) -> None:
        """The same initial condition again, for re-recording (sim)."""
        return None  # optional: a do-nothing default, not an abstract method

    def detected_success(self) -> bool | None:
        """The back end's own success check, None when it has none (a real arm)."""
        return None

    def episode_attrs(self) -> dict[str, Any]:
        """Attributes stored with the episode (initial condition, topics, ...)."""
        return {}

    def idle(self) -> None:
        """Called while not recording (viewer refresh, keep topics fresh)."""
        return None  # optional: a do-nothing default, not an abstract method

    def close(self) -> None:
        """Release the simulator or the robot's connections."""
        return None  # optional: a do-nothing default, not an abstract method
