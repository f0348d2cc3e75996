"""Latency-aware timing of an action chunk, as in Diffusion Policy's real-robot deployment.

A chunk is predicted from an observation taken at ``obs_stamp``; its k-th action belongs to
``obs_stamp + k * dt``. By the time inference finishes some of those instants are gone, and
executing them late would replay the past, so they are dropped and the rest keep their times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_offrl.errors import ConfigError


@dataclass(frozen=True)
class ScheduledChunk:
    """The part of a chunk still in the future, timed relative to ``now``."""

    indices: np.ndarray  # (M,) chunk steps kept
    times_from_now: np.ndarray  # (M,) seconds, strictly increasing, > 0
    values: np.ndarray  # (M, A)
    dropped: int  # steps already in the past

    @property
    def empty(self) -> bool:
        return self.values.shape[0] == 0


def schedule_chunk(
    chunk: np.ndarray, obs_stamp_s: float, now_s: float, dt: float, min_lead_s: float = 0.0
) -> ScheduledChunk:
    """Keep the actions whose time ``obs_stamp + k*dt`` is more than ``min_lead_s`` after ``now``.

    ``min_lead_s`` covers the time the command needs to reach the controller: an action due
    sooner than that cannot be executed on time either.
    """
    arr = np.asarray(chunk, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ConfigError(f"an action chunk must be (steps, action_dim) with steps > 0, got shape {arr.shape}")
    if not dt > 0:
        raise ConfigError(f"control period must be > 0 s, got {dt}")
    if min_lead_s < 0:
        raise ConfigError(f"min_lead_time_s must be >= 0, got {min_lead_s}")
    times = obs_stamp_s + dt * np.arange(arr.shape[0]) - now_s
    keep = np.flatnonzero(times > min_lead_s)
    return ScheduledChunk(
        indices=keep,
        times_from_now=times[keep],
        values=arr[keep],
        dropped=int(arr.shape[0] - keep.size),
    )


def finite_difference_velocities(positions: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Velocities for trajectory points: central differences inside, zero at the last point.

    A joint_trajectory_controller interpolates with these; ending on zero velocity makes the
    arm come to rest at the end of a chunk if no newer chunk replaces it.
    """
    pos = np.asarray(positions, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    n = pos.shape[0]
    if t.shape != (n,) or (n > 1 and not np.all(np.diff(t) > 0)):
        raise ConfigError(f"trajectory times must strictly increase, one per point; got {t.tolist()}")
    vel = np.zeros_like(pos)
    if n >= 2:
        vel[0] = (pos[1] - pos[0]) / (t[1] - t[0])
    if n >= 3:
        vel[1:-1] = (pos[2:] - pos[:-2]) / (t[2:] - t[:-2])[:, None]
    return vel


def message_time_s(header: Any, use_header_stamps: bool, now_s: float) -> float:
    """When an input was observed: its header stamp, or the arrival time when stamps are off or zero.

    A zero stamp means "unset" (a driver that never fills headers, or JointTrajectory's "start now"),
    so both nodes fall back to arrival time for it rather than treating it as 1970.
    """
    if use_header_stamps and header is not None and (header.stamp.sec or header.stamp.nanosec):
        return float(header.stamp.sec) + float(header.stamp.nanosec) * 1e-9
    return now_s
