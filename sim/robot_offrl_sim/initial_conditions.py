"""Explicit, reproducible initial conditions: an object pose chosen exactly or drawn from a region.

An initial condition is saved in every sim episode's attrs and in sweep results, so it has to be a small
JSON-friendly record that also says where it came from (region and seed) for re-running one episode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from robot_offrl.errors import ConfigError
from robot_offrl_sim.spec import TaskSpec


@dataclass(frozen=True)
class InitialCondition:
    """Object pose relative to the task origin (metres, radians); region/seed say how it was chosen."""

    x: float
    y: float
    yaw: float = 0.0
    region: str | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, float | str | int | None]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> InitialCondition:
        try:
            return cls(
                x=float(raw["x"]),  # type: ignore[arg-type]
                y=float(raw["y"]),  # type: ignore[arg-type]
                yaw=float(raw.get("yaw", 0.0)),  # type: ignore[arg-type]
                region=None if raw.get("region") is None else str(raw["region"]),
                seed=None if raw.get("seed") is None else int(raw["seed"]),  # type: ignore[call-overload]
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"initial condition needs numeric x, y (and yaw), got {dict(raw)!r}") from err


def draw_initial_condition(spec: TaskSpec, region: str, seed: int) -> InitialCondition:
    """Same (task, region, seed) -> same pose on any machine: numpy's PCG64 is platform independent."""
    reg = spec.region(region)
    x, y, yaw = reg.sample(np.random.default_rng([seed, 0x1C]))
    return InitialCondition(x=x, y=y, yaw=yaw, region=region, seed=seed)


def exact_initial_condition(spec: TaskSpec, x: float, y: float, yaw: float = 0.0) -> InitialCondition:
    """A hand-picked pose, checked against the table so a typo cannot drop the object off the edge."""
    if not spec.table.contains(x, y):
        raise ConfigError(
            f"task {spec.name!r}: object pose x={x:.3f} y={y:.3f} is outside the table limits "
            f"x={list(spec.table.x)} y={list(spec.table.y)} (relative to origin {list(spec.origin)})"
        )
    return InitialCondition(x=float(x), y=float(y), yaw=float(yaw))

