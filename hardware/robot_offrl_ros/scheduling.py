"""Latency-aware timing of an action chunk, as in Diffusion Policy's real-robot deployment.

A chunk is predicted from an observation taken at ``obs_stamp``; its k-th action belongs to
``first + k * dt``, where ``first`` is ``obs_stamp + dt`` for joint-position targets (the position
to reach at the end of the action's period) and ``obs_stamp`` for servo actions (first_action_time).
By the time inference finishes some of those instants are gone, and
executing them late would replay the past, so they are dropped and the rest keep their times.

Plan-ahead (``plan_ahead: auto``) decides *when* to plan when inference is slower than a control
period: the next plan starts at the last tick from which its chunk still reaches the controller
(by the slowest of the recent plan times plus a margin) before the current chunk's last
action, and the new chunk is spliced onto what is left of the current one, so the command does
not jump where they meet. One inference runs at a time, so a chunk executes at most its own
``n*dt - latency`` and the stream is continuous while latency stays below about half the chunk.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
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


# Output modes whose actions are positions to reach (joint targets), not per-period commands.
POSITION_TARGET_MODES = ("trajectory", "forward")


def first_action_time(obs_stamp_s: float, dt: float, output_mode: str) -> float:
    """When a chunk planned from an observation at ``obs_stamp_s`` wants its first action.

    A position action is the joint target of one control period: the store records the joints the
    step *reached* (robot_offrl_sim.tasks: ``last_action``), and a direct rollout holds action k as
    the setpoint during [obs + k*dt, obs + (k+1)*dt]. As a trajectory point (a position at a time) it
    therefore belongs at the *end* of its period, ``obs + (k+1)*dt``; placing it at ``obs + k*dt``
    drives the arm one period ahead of the plan and drops a still-useful first action (measured on
    lift_joint: 4/8 against 8/8 successes with the direct sweep's replanning).
    A servo action is a velocity held over its period, so it starts at ``obs + k*dt``.
    """
    return obs_stamp_s + (dt if output_mode in POSITION_TARGET_MODES else 0.0)


class LatencyEstimate:
    """A high percentile of the recent plan times (observation to send), for plan-ahead.

    By default the slowest of the last 20: a chunk that arrives late leaves the arm resting at the
    end of the previous one, and real inference on a loaded computer has spikes (a tiny image
    checkpoint on the loaded 2-core development machine planned in ~100 ms with spikes of several
    hundred: timed by its p90 plus 50 ms, plan-ahead left 24 gaps over 1.5 periods in 20 s against 2
    when replanning back to back; by the slowest of 20, 11 against 12, docs/benchmarks.md). A short
    window, because load on the robot computer changes.
    """

    def __init__(self, window: int = 20, percentile: float = 100.0, min_samples: int = 3) -> None:
        if not 1 <= min_samples <= window or not 0.0 < percentile <= 100.0:
            raise ConfigError(f"latency window must be >= min_samples >= 1 and percentile in (0, 100], "
                              f"got {window}, {min_samples}, {percentile}")
        self._samples: deque[float] = deque(maxlen=window)
        self.percentile = percentile
        self.min_samples = min_samples

    def add(self, seconds: float) -> None:
        if np.isfinite(seconds) and seconds >= 0:
            self._samples.append(float(seconds))

    def value(self) -> float | None:
        """The estimate in seconds, or None before ``min_samples`` plans (then: plan as early as possible)."""
        if len(self._samples) < self.min_samples:
            return None
        return float(np.percentile(np.asarray(self._samples), self.percentile))


def plan_due(now_s: float, period_s: float, chunk_end_s: float | None, latency_s: float | None,
             margin_s: float, replan_when_fast: bool = True) -> bool:
    """Whether a control tick at ``now_s`` must start the next plan (plan-ahead).

    True when there is nothing to plan ahead of (no chunk pending, or no latency measured yet),
    when inference fits in one period and ``replan_when_fast`` (then the node replans every period,
    as with plan-ahead off), or when waiting one more period would make the next chunk arrive less
    than ``margin_s`` before ``chunk_end_s``, the time of the current chunk's last action.
    ``replan_when_fast=False`` (plan_ahead: chunk) keeps chunks running whatever the inference speed:
    a diffusion policy sampled afresh every period switches between modes of its action distribution
    (a lift_joint checkpoint lifted in 0-1 of 8 episodes that way, 8 of 8 with 8-action chunks).
    """
    if chunk_end_s is None or latency_s is None or (replan_when_fast and latency_s < period_s):
        return True
    return now_s + period_s + latency_s + margin_s > chunk_end_s


def splice(prev_times_s: np.ndarray, prev_values: np.ndarray, sched: ScheduledChunk,
           now_s: float) -> ScheduledChunk:
    """``sched`` blended onto the previous chunk where they overlap in time, without a jump.

    ``prev_times_s`` are absolute times of the previous chunk's actions. The new chunk's actions
    due before the previous chunk's last one get weights 0, 1/m, ..., (m-1)/m on the new values
    (m overlapping actions), the rest are the new chunk's own: the first action spliced in is the
    previous chunk's command at that instant, and the hand-over is spread over the overlap. A
    convex blend of two commands stays inside any box both lie in, and the output's filter and
    command gate still check the result.
    """
    times = now_s + sched.times_from_now
    prev_t = np.asarray(prev_times_s, dtype=np.float64)
    prev_v = np.asarray(prev_values, dtype=np.float64)
    if sched.empty or prev_t.size == 0 or prev_v.shape != (prev_t.size, sched.values.shape[1]):
        return sched
    eps = 1e-6  # s: times are sums of floats; an action "at" the previous chunk's last one overlaps it
    overlap = np.flatnonzero((times >= prev_t[0] - eps) & (times <= prev_t[-1] + eps))
    if overlap.size == 0 or overlap[0] != 0:  # the previous chunk already ran out: nothing to meet
        return sched
    m = int(overlap[-1]) + 1  # overlapping actions are a prefix: both chunks are time-ordered
    old = np.stack([np.interp(times[:m], prev_t, prev_v[:, j]) for j in range(prev_v.shape[1])], axis=1)
    w = (np.arange(m) / m)[:, None]
    values = sched.values.copy()
    values[:m] = (1.0 - w) * old + w * sched.values[:m]
    return replace(sched, values=values)


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
