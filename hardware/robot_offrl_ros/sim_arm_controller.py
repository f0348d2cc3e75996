"""What the simulated arm's controllers do with a command: check it, then track it in time.

Pure numpy (no ROS, no robosuite), so the interpolation and the refusal rules are tested on
their own and the node only translates messages. The behaviour copies what a lab's real
controllers do, because a rehearsal that is kinder than the real arm proves nothing:

* a JointTrajectory is followed point by point in time (``time_from_start`` after the header
  stamp, or after receipt when the stamp is zero), starting from where the arm is being driven
  now, linearly between points, holding the last point afterwards; points already in the past
  on arrival are dropped, and a trajectory with none left is refused (joint_trajectory_controller
  does the same);
* a forward or servo command replaces the setpoint at once;
* anything non-finite, mis-named, mis-sized or outside the joint limits is refused whole and
  never applied: the arm keeps its previous setpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class CommandRefused(Exception):
    """A command that must not reach the arm; ``reason`` is a short counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def require_finite(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise CommandRefused("non_finite", f"{what} contains non-finite values: {values.tolist()}")


def require_within(values: np.ndarray, lower: np.ndarray, upper: np.ndarray, what: str) -> None:
    """Finite and inside [lower, upper] (a tiny tolerance absorbs float round-trips through messages)."""
    require_finite(values, what)
    tol = 1e-9
    bad = np.flatnonzero(((values < lower - tol) | (values > upper + tol)).reshape(-1))
    if bad.size:
        flat = values.reshape(-1)
        j = int(bad[0]) % values.shape[-1]
        raise CommandRefused("out_of_limits", f"{what}: joint {j} value {flat[bad[0]]:.4f} is outside "
                                              f"[{lower[j]:.4f}, {upper[j]:.4f}]")


def order_by_name(names: Sequence[str], expected: Sequence[str], what: str) -> np.ndarray:
    """Column index of each expected joint in ``names``; every expected joint must appear exactly once."""
    names = list(names)
    if sorted(names) != sorted(expected) or len(set(names)) != len(names):
        raise CommandRefused("names", f"{what} names joints {names}; this arm needs exactly {list(expected)}")
    return np.array([names.index(n) for n in expected], dtype=np.int64)


def trajectory_arrays(joint_names: Sequence[str], points: Sequence[tuple[float, Sequence[float]]],
                      expected: Sequence[str], lower: np.ndarray, upper: np.ndarray,
                      what: str) -> tuple[np.ndarray, np.ndarray]:
    """(time_from_start, positions in ``expected`` order) of a trajectory, or CommandRefused.

    ``points`` are (time_from_start_s, positions) pairs as read off the message.
    """
    if not points:
        raise CommandRefused("empty", f"{what} has no points")
    order = order_by_name(joint_names, expected, what)
    times = np.array([float(t) for t, _ in points], dtype=np.float64)
    rows = []
    for k, (_, pos) in enumerate(points):
        if len(pos) != len(order):
            raise CommandRefused("names", f"{what} point {k} has {len(pos)} positions for {len(order)} joints")
        rows.append(np.asarray(pos, dtype=np.float64)[order])
    positions = np.vstack(rows)
    require_finite(times, f"{what} time_from_start")
    if times[0] < 0 or np.any(np.diff(times) <= 0):
        raise CommandRefused("times", f"{what}: time_from_start must be >= 0 and strictly increasing, got {times.tolist()}")
    require_within(positions, lower, upper, what)
    return times, positions


class SetpointTracker:
    """The position setpoint of a group of joints at any time, as a trajectory controller keeps it."""

    def __init__(self, setpoint: np.ndarray) -> None:
        self._hold = np.asarray(setpoint, dtype=np.float64).copy()
        self._times: np.ndarray | None = None
        self._values: np.ndarray | None = None

    def hold(self, setpoint: np.ndarray) -> None:
        """Drop any trajectory and stay at ``setpoint`` (forward/servo commands, resets)."""
        self._times = self._values = None
        self._hold = np.asarray(setpoint, dtype=np.float64).copy()

    def follow(self, now_s: float, start_s: float, times_from_start: np.ndarray, positions: np.ndarray) -> int:
        """Replace the active trajectory; returns how many of its points are still ahead.

        The first segment starts at the current setpoint *now*, so a new trajectory continues the
        motion instead of jumping to its first point.
        """
        due = start_s + np.asarray(times_from_start, dtype=np.float64)
        ahead = due > now_s
        if not np.any(ahead):
            raise CommandRefused("late", f"every point was due before receipt (last at {due[-1]:.3f} s, now {now_s:.3f} s)")
        current = self.sample(now_s)
        self._times = np.concatenate([[now_s], due[ahead]])
        self._values = np.vstack([current[None, :], np.asarray(positions, dtype=np.float64)[ahead]])
        return int(np.count_nonzero(ahead))

    def sample(self, now_s: float) -> np.ndarray:
        """The setpoint at ``now_s``: linear between points, the last point once the trajectory ended."""
        if self._times is None or self._values is None:
            return self._hold.copy()
        if now_s >= self._times[-1]:
            self.hold(self._values[-1])
            return self._hold.copy()
        return np.array([np.interp(now_s, self._times, self._values[:, j]) for j in range(self._values.shape[1])])

    @property
    def active(self) -> bool:
        """True while a trajectory is being followed."""
        return self._times is not None
