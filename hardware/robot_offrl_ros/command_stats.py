"""What a controller receives from policy_node, in numbers: messages/s, executed actions/s, gaps, latency.

Shared by bench/bench_ros_latency.py (an in-process rig) and the ROS sweep back end (sim_sweep_backend),
so "command rate" and "obs->command latency" mean the same thing in every row of docs/benchmarks.md.
Plain functions over received messages: no node, no clock of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TIME_EPS_S = 1e-6  # well below any control period, above float error of seconds + nanoseconds


def stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def point_times(msg: Any) -> np.ndarray:
    """Absolute times of a trajectory's points (header stamp + time_from_start)."""
    return np.array([stamp_s(msg) + p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])


def executed_stream(trajs: Sequence[tuple[float, Any]]) -> tuple[np.ndarray, list[float]]:
    """Times of the actions a trajectory controller executes, and the jump (rad, max over joints)
    where each message takes over from the previous one while that one still had points left.

    ``trajs`` are (arrival time, message), arrival on the clock of the stamps. A controller keeps the
    points due after a trajectory's arrival and moves towards them until the next one arrives
    (sim_arm_controller.py, as joint_trajectory_controller does), so the actions executed per message
    are its points due in (its arrival, the next arrival]: a point due at the next arrival has just
    been reached when it is replaced. Cutting at the next message's *stamp* instead, as this did
    before 2026-12-02, miscounts whenever commands arrive after their stamp or on a clock that
    advances in control periods (sim time): a 20 Hz stream was counted as 12 actions/s.
    """
    times: list[float] = []
    jumps: list[float] = []
    for i, (arrived, msg) in enumerate(trajs):
        t = point_times(msg)
        until = trajs[i + 1][0] if i + 1 < len(trajs) else np.inf
        # Stamps travel as integer nanoseconds: compare with a tolerance far below a control period.
        times.extend(t[(t > arrived + TIME_EPS_S) & (t <= until + TIME_EPS_S)].tolist())
        if i > 0:
            prev = trajs[i - 1][1]
            pt = point_times(prev)
            if pt[0] <= t[0] <= pt[-1]:
                pos = np.array([p.positions for p in prev.points])
                old = np.array([np.interp(t[0], pt, pos[:, j]) for j in range(pos.shape[1])])
                jumps.append(float(np.abs(np.array(msg.points[0].positions) - old).max()))
    return np.array(times), jumps


def obs_to_command_latencies(trajs: Sequence[tuple[float, Any]], chunks: Sequence[tuple[float, Any]]) -> np.ndarray:
    """Per trajectory: its arrival time minus the observation stamp of the chunk it was planned from.

    policy_node publishes ``~/action_chunk`` (stamped with the observation) and the trajectory back to
    back in one control step, so each trajectory pairs with the chunk that arrived nearest to it.
    Arrival times and stamps must be on one clock (both wall, or both sim time).
    """
    if not trajs or not chunks:
        return np.array([])
    chunk_recv = np.array([t for t, _ in chunks])
    chunk_obs = np.array([stamp_s(m) for _, m in chunks])
    return np.array([t - chunk_obs[int(np.argmin(np.abs(chunk_recv - t)))] for t, _ in trajs])
