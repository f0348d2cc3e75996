"""Regions of object poses (x, y, yaw) and the table limits they must respect.

Regions are configuration (configs/task/*.yaml), so the same code serves narrow expert data, wide play
data and evaluation grids; everything here is plain arithmetic with no simulator in sight, which keeps
it cheap to validate a config before building an environment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from robot_offrl.errors import ConfigError


def _bounds(raw: object, what: str) -> tuple[float, float]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != 2:
        raise ConfigError(f"{what} must be a [lo, hi] pair, got {raw!r}")
    try:
        lo, hi = float(raw[0]), float(raw[1])
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must hold two numbers, got {raw!r}") from err
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ConfigError(f"{what} must be finite with lo <= hi, got {raw!r}")
    return lo, hi


@dataclass(frozen=True)
class Region:
    """An axis-aligned box of object poses, relative to the task's origin (metres, radians)."""

    name: str
    x: tuple[float, float]
    y: tuple[float, float]
    yaw: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def from_mapping(cls, name: str, raw: Mapping[str, object], where: str = "") -> Region:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"region {name!r}{where} must be a mapping with x, y (and yaw), got {raw!r}")
        missing = [k for k in ("x", "y") if k not in raw]
        if missing:
            raise ConfigError(f"region {name!r}{where} lacks {missing}: give [lo, hi] in metres")
        yaw = _bounds(raw["yaw"], f"region {name!r} yaw{where}") if "yaw" in raw else (0.0, 0.0)
        return cls(
            name=name,
            x=_bounds(raw["x"], f"region {name!r} x{where}"),
            y=_bounds(raw["y"], f"region {name!r} y{where}"),
            yaw=yaw,
        )

    def contains(self, x: float, y: float, eps: float = 1e-9) -> bool:
        """Position-only membership: yaw does not decide whether a sweep cell counts as 'narrow'."""
        return self.x[0] - eps <= x <= self.x[1] + eps and self.y[0] - eps <= y <= self.y[1] + eps

    def contains_region(self, other: Region, eps: float = 1e-9) -> bool:
        return (
            self.x[0] - eps <= other.x[0]
            and other.x[1] <= self.x[1] + eps
            and self.y[0] - eps <= other.y[0]
            and other.y[1] <= self.y[1] + eps
        )

    @property
    def area(self) -> float:
        return (self.x[1] - self.x[0]) * (self.y[1] - self.y[0])

    def sample(self, rng: np.random.Generator) -> tuple[float, float, float]:
        x = float(rng.uniform(*self.x))
        y = float(rng.uniform(*self.y))
        yaw = float(rng.uniform(*self.yaw))
        return x, y, yaw

    def grid(self, nx: int, ny: int) -> list[tuple[float, float]]:
        """Cell centres of an nx-by-ny grid, row-major in y then x, so cell ids are stable."""
        if nx < 1 or ny < 1:
            raise ConfigError(f"a grid needs at least 1x1 cells, got {nx}x{ny}")
        xs = [self.x[0] + (i + 0.5) * (self.x[1] - self.x[0]) / nx for i in range(nx)]
        ys = [self.y[0] + (j + 0.5) * (self.y[1] - self.y[0]) / ny for j in range(ny)]
        return [(x, y) for y in ys for x in xs]

    def to_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y), "yaw": list(self.yaw)}


def check_on_table(region: Region, table: Region, task: str) -> None:
    """Refuse a region the object could be placed off the table (or inside a bin wall) from."""
    if not table.contains_region(region):
        raise ConfigError(
            f"task {task!r}: region {region.name!r} x={list(region.x)} y={list(region.y)} reaches outside the "
            f"table limits x={list(table.x)} y={list(table.y)}; shrink the region in configs/task/{task}.yaml"
        )


def parse_grid(text: str) -> tuple[int, int]:
    """'7x7' -> (7, 7); a grid with a zero side is a user error, not an empty sweep."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"grid must look like 7x7 (columns x rows), got {text!r}")
    nx, ny = int(parts[0]), int(parts[1])
    if nx < 1 or ny < 1:
        raise ConfigError(f"grid {text!r} has no cells: both sides must be at least 1")
    return nx, ny
