"""When the controller is asked to reach each planned joint target, checked on real ROS traffic.

A joint-position action is the target of one control period: the data stores the joints a step
*reached*, and a direct sweep holds action k as the setpoint during [obs + k*dt, obs + (k+1)*dt].
As a trajectory point (a position at a time) action k therefore belongs at obs + (k+1)*dt. The node
once stamped it at obs + k*dt, which drove the simulated arm one period ahead of every plan and
dropped a still-useful first action: a lift_joint checkpoint that lifted in 8 of 8 direct episodes
lifted in 4 through the same timing rules. Only stamps the node wrote are compared (the raw chunk on
``~/action_chunk`` is stamped with its observation), never wall-clock durations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from ros_policy_double import ScriptedPolicy
from ros_rig import TRAJECTORY_TOPIC, Rig, is_hold
from std_srvs.srv import Trigger

from robot_offrl_ros.scheduling import first_action_time

PERIOD = 0.1
CHUNK_TOPIC = "/policy_node/action_chunk"


def stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def point_times(msg: Any) -> np.ndarray:
    return np.array([stamp_s(msg) + p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])


def test_first_action_time_is_the_end_of_its_period_for_position_targets() -> None:
    assert first_action_time(10.0, PERIOD, "trajectory") == pytest.approx(10.1)
    assert first_action_time(10.0, PERIOD, "forward") == pytest.approx(10.1)
    assert first_action_time(10.0, PERIOD, "servo") == 10.0  # a velocity held over its own period


@pytest.fixture
def rig(ros_context: Any) -> Iterator[Rig]:
    # A high velocity cap and small steps: the positions sent are the policy's own, unfiltered.
    policy = ScriptedPolicy(offset=0.001, control_rate_hz=1 / PERIOD)
    rig = Rig(ros_context, policy, {"enable_control": True, "control_rate_hz": 1 / PERIOD, "plan_ahead": "off",
                                    "max_joint_velocity": [50.0] * 7})
    assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
    assert rig.activate(), rig.node._reason
    yield rig
    rig.close()


def planned_and_sent(rig: Rig, n: int) -> list[tuple[Any, Any]]:
    """n (raw chunk, trajectory) pairs of one run, in the order the node published them.

    The node publishes a chunk and its trajectory back to back under one lock and drops both for an
    ended run, so between a hold and the next hold the two streams pair up one to one.
    """
    assert rig.call(Trigger, "/policy_node/stop").success
    rig.clear()
    assert rig.call(Trigger, "/policy_node/start").success
    assert rig.wait_for(lambda: len([m for m in rig.msgs(TRAJECTORY_TOPIC) if not is_hold(m)]) >= n, 20.0)
    assert rig.call(Trigger, "/policy_node/stop").success
    assert rig.wait_for(lambda: any(is_hold(m) for m in rig.msgs(TRAJECTORY_TOPIC)), 5.0)
    sent = [m for m in rig.msgs(TRAJECTORY_TOPIC) if not is_hold(m)]
    chunks = rig.msgs(CHUNK_TOPIC)
    assert len(chunks) == len(sent), (len(chunks), len(sent))
    return list(zip(chunks, sent, strict=True))


def test_each_joint_target_is_due_at_the_end_of_its_period(rig: Rig) -> None:
    for chunk, traj in planned_and_sent(rig, 5):
        obs_stamp = stamp_s(chunk)
        periods = (point_times(traj) - obs_stamp) / PERIOD
        np.testing.assert_allclose(periods, np.round(periods), atol=1e-3)  # on the plan's own grid
        k = np.round(periods).astype(int) - 1  # the chunk step each point carries, if due at its period's end
        assert k.min() >= 0, f"a point is due at or before its observation: periods {periods.tolist()}"
        raw = np.array([p.positions for p in chunk.points])
        order = [list(chunk.joint_names).index(name) for name in traj.joint_names]
        sent = np.array([p.positions for p in traj.points])
        # Point j carries chunk step k[j]: action k is reached at obs + (k+1)*dt, not obs + k*dt.
        np.testing.assert_allclose(sent, raw[k][:, order], atol=1e-9)


def executed_per_chunk(pairs: list[tuple[Any, Any]]) -> list[int]:
    """Per trajectory but the last: its points due before the next trajectory's first point."""
    sent = [traj for _, traj in pairs]
    return [int(np.count_nonzero(point_times(a) < point_times(b)[0] - 1e-6)) for a, b in zip(sent, sent[1:], strict=False)]


@pytest.mark.parametrize("mode", ["auto", "chunk"])
def test_chunk_mode_runs_chunks_like_the_runtime_and_auto_replans_every_period(ros_context: Any, mode: str) -> None:
    """A policy that plans well within a period: auto replans every period (one action of each chunk
    runs), chunk keeps each 8-action chunk until the next one is timed to arrive before its end, as
    PolicyRuntime.act runs n_action_steps in a direct sweep. Counts of points, from the node's stamps."""
    policy = ScriptedPolicy(offset=0.001, control_rate_hz=1 / PERIOD)
    rig = Rig(ros_context, policy, {"enable_control": True, "control_rate_hz": 1 / PERIOD, "plan_ahead": mode,
                                    "plan_ahead_margin_s": 0.0, "max_joint_velocity": [50.0] * 7})
    try:
        assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
        assert rig.activate(), rig.node._reason
        pairs = planned_and_sent(rig, 8)
    finally:
        rig.close()
    executed = executed_per_chunk(pairs[3:])  # after the first plans, which measure the latency
    if mode == "auto":
        assert max(executed) <= 2, executed  # replanned every period (a late tick may let two run)
    else:
        # 8 actions, the next plan timed by the slowest of the last plans (< a period here) to arrive
        # before the last one: at least 5 of each chunk run (7 when every plan is equally fast).
        assert min(executed) >= 5, executed
        # Between plans every control period still hands the policy its observation, so the history a
        # plan sees holds consecutive periods, as in training, not frames a chunk apart.
        plans = [i for i, event in enumerate(policy.events) if event == "plan"]
        between = [b - a - 1 for a, b in zip(plans[3:], plans[4:], strict=False)]
        assert between and min(between) >= 4, between
