"""The last line between a policy's output and the controllers: pure Python, no ROS.

Every command the node sends goes through here, so the rules (finite values, joint limits,
velocity cap, workspace box, joint names) are unit-tested without a robot and cannot be
bypassed by an output mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robot_offrl.errors import ConfigError, UserError

LIMIT_POLICIES = ("clamp", "hold")


class UnsafeCommandError(UserError):
    """A command was refused; the node holds instead of sending it.

    ``reason`` is a short machine-readable tag (nonfinite, joint_limit, workspace, names) that
    diagnostics report, so an operator sees at a glance why the arm stopped.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def match_names(available: Sequence[str], wanted: Sequence[str], what: str) -> np.ndarray:
    """Indices of ``wanted`` names inside ``available``; joints are matched by name, never position.

    Drivers publish /joint_states in arbitrary order (and with extra joints), so index-based
    mapping silently swaps joints; a missing name is a configuration error instead.
    """
    lookup = {name: i for i, name in enumerate(available)}
    missing = [name for name in wanted if name not in lookup]
    if missing:
        raise ConfigError(
            f"{what}: joint name(s) {missing} not found among {list(available)}; "
            "set the node's joint_names parameter to the controller's joint names"
        )
    return np.asarray([lookup[name] for name in wanted], dtype=np.int64)


def require_finite(values: np.ndarray, what: str) -> None:
    """Refuse NaN/inf anywhere: a non-finite command has no safe interpretation."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise UnsafeCommandError("nonfinite", f"{what} contains NaN/inf (first at index {bad}); holding")


@dataclass(frozen=True)
class Bounds:
    """Closed interval per named value that a controller message may carry (joints, twist axes).

    ``reason`` is the tag a violation reports (joint_limit for positions, twist_limit for
    servo velocities), so diagnostics say which kind of bound the refused message broke.
    """

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    reason: str = "joint_limit"

    def indices(self, names: Sequence[str], what: str) -> np.ndarray:
        """Where each of ``names`` sits in these bounds; an unknown or repeated name is refused."""
        lookup = {name: i for i, name in enumerate(self.names)}
        unknown = [name for name in names if name not in lookup]
        if unknown or len(set(names)) != len(names):
            raise UnsafeCommandError(
                "names", f"{what} names {list(names)} must be distinct and among {list(self.names)}; not sent"
            )
        return np.asarray([lookup[name] for name in names], dtype=np.int64)

    def require_within(self, values: np.ndarray, what: str, index: np.ndarray | None = None) -> None:
        """Refuse NaN/inf and any value outside its interval (``index`` picks the bounds per column)."""
        arr = np.asarray(values, dtype=np.float64)
        require_finite(arr, what)
        lo = self.lower if index is None else self.lower[index]
        hi = self.upper if index is None else self.upper[index]
        if arr.shape[-1:] != lo.shape:
            raise UnsafeCommandError("names", f"{what} has {arr.shape[-1:]} values per row, expected {lo.shape}")
        outside = (arr < lo) | (arr > hi)
        if np.any(outside):
            pos = tuple(int(i) for i in np.argwhere(outside)[0])
            j = pos[-1]
            name = self.names[j if index is None else int(index[j])]
            raise UnsafeCommandError(
                self.reason,
                f"{what}: {name}={arr[pos]:.4f} is outside [{lo[j]:.4f}, {hi[j]:.4f}]; not sent, holding",
            )


@dataclass(frozen=True)
class JointLimits:
    """Position limits and velocity caps per joint, in the order of ``names``."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray

    @classmethod
    def from_lists(
        cls,
        names: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        max_velocity: Sequence[float],
        velocity_scale: float = 1.0,
    ) -> JointLimits:
        """Validate the parameter lists; ``velocity_scale`` < 1 slows first motions down."""
        n = len(names)
        if n == 0:
            raise ConfigError("joint_names is empty; list the arm's joints in the controller's order")
        if len(set(names)) != n:
            raise ConfigError(f"joint_names has duplicates: {list(names)}")
        for label, values in (
            ("joint_lower_limits", lower),
            ("joint_upper_limits", upper),
            ("max_joint_velocity", max_velocity),
        ):
            if len(values) != n:
                raise ConfigError(f"{label} has {len(values)} values but joint_names has {n}; give one per joint")
        lo = np.asarray(lower, dtype=np.float64)
        hi = np.asarray(upper, dtype=np.float64)
        vel = np.asarray(max_velocity, dtype=np.float64)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise ConfigError(f"joint limits must be finite with lower < upper, got lower={lo} upper={hi}")
        if not (np.all(np.isfinite(vel)) and np.all(vel > 0)):
            raise ConfigError(f"max_joint_velocity must be finite and > 0, got {vel}")
        if not (0.0 < velocity_scale <= 1.0):
            raise ConfigError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        return cls(tuple(names), lo, hi, vel * velocity_scale)

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.names, self.lower, self.upper)


@dataclass(frozen=True)
class WorkspaceBox:
    """Axis-aligned box (robot base frame, metres) the end effector must stay in."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_lists(cls, low: Sequence[float], high: Sequence[float]) -> WorkspaceBox:
        lo = np.asarray(low, dtype=np.float64)
        hi = np.asarray(high, dtype=np.float64)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
            raise ConfigError(
                f"workspace_min/workspace_max must be 3 values each with min < max, got {list(low)} / {list(high)}"
            )
        return cls(lo, hi)

    def require_inside(self, position: np.ndarray) -> None:
        """Refuse to move when the measured end effector already left the box."""
        pos = np.asarray(position, dtype=np.float64)
        require_finite(pos, "end-effector position")
        if np.any(pos < self.low) or np.any(pos > self.high):
            raise UnsafeCommandError(
                "workspace",
                f"end effector at {np.round(pos, 4).tolist()} is outside the workspace box "
                f"{self.low.tolist()}..{self.high.tolist()}; holding (jog it back in, then call ~/start)",
            )

    def clip_velocity(self, position: np.ndarray, linear: np.ndarray, dt: float) -> np.ndarray:
        """Shrink a Cartesian velocity so one step of ``dt`` cannot leave the box.

        Outside the box on an axis, only motion back toward it is kept.
        """
        pos = np.asarray(position, dtype=np.float64)
        vel = np.asarray(linear, dtype=np.float64).copy()
        max_up = np.maximum(self.high - pos, 0.0) / dt
        max_down = np.minimum(self.low - pos, 0.0) / dt
        return np.clip(vel, max_down, max_up)


@dataclass
class FilterReport:
    """What the filter changed, for diagnostics (counts of values touched)."""

    limit_clamped: int = 0
    velocity_capped: int = 0


class JointCommandFilter:
    """Apply joint limits and a per-step velocity cap to a chunk of absolute joint targets."""

    def __init__(self, limits: JointLimits, on_limit_violation: str = "clamp") -> None:
        if on_limit_violation not in LIMIT_POLICIES:
            raise ConfigError(f"limit_violation must be one of {LIMIT_POLICIES}, got {on_limit_violation!r}")
        self.limits = limits
        self.on_limit_violation = on_limit_violation

    def apply(
        self, positions: np.ndarray, times_s: np.ndarray, current: np.ndarray
    ) -> tuple[np.ndarray, FilterReport]:
        """Filter ``positions`` (N, J) reached at ``times_s`` (N,) seconds from now, starting at ``current``.

        The velocity cap uses the real time gap before each point (the first gap is from now),
        so a point scheduled soon after now cannot demand a jump faster than the cap.
        """
        lim = self.limits
        pos = np.asarray(positions, dtype=np.float64)
        times = np.asarray(times_s, dtype=np.float64)
        cur = np.asarray(current, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != len(lim.names) or times.shape != (pos.shape[0],):
            raise UnsafeCommandError(
                "names",
                f"command has shape {pos.shape} with {times.shape} times, expected (N, {len(lim.names)}) "
                f"for joints {list(lim.names)}",
            )
        require_finite(pos, "policy joint command")
        require_finite(times, "command times")
        require_finite(cur, "measured joint positions")
        outside_now = (cur < lim.lower) | (cur > lim.upper)
        if np.any(outside_now):
            j = int(np.argmax(outside_now))
            raise UnsafeCommandError(
                "joint_limit",
                f"measured {lim.names[j]}={cur[j]:.4f} is outside [{lim.lower[j]:.4f}, {lim.upper[j]:.4f}]; "
                "holding (jog the arm back inside the joint limits, then call ~/start)",
            )
        report = FilterReport()
        outside = (pos < lim.lower) | (pos > lim.upper)
        if np.any(outside):
            k, j = np.argwhere(outside)[0]
            if self.on_limit_violation == "hold":
                raise UnsafeCommandError(
                    "joint_limit",
                    f"policy commands {lim.names[j]}={pos[k, j]:.4f} at step {k}, outside "
                    f"[{lim.lower[j]:.4f}, {lim.upper[j]:.4f}]; holding (limit_violation=hold)",
                )
            report.limit_clamped = int(outside.sum())
            pos = np.clip(pos, lim.lower, lim.upper)
        out = np.empty_like(pos)
        prev = cur
        prev_t = 0.0
        for k in range(pos.shape[0]):
            gap = times[k] - prev_t
            if gap <= 0:
                raise UnsafeCommandError("names", f"command times must strictly increase from now, got {times}")
            max_step = lim.max_velocity * gap
            delta = pos[k] - prev
            capped = np.clip(delta, -max_step, max_step)
            report.velocity_capped += int(np.count_nonzero(capped != delta))
            prev = prev + capped
            out[k] = prev
            prev_t = times[k]
        # Every step stays between in-limit points, so this clip only removes float rounding (an ulp
        # past a limit would otherwise make the command gate refuse an in-limit command).
        return np.clip(out, lim.lower, lim.upper), report
