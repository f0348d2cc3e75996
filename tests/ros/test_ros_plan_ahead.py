"""Plan-ahead: slow inference timed to keep the command stream continuous, chunks spliced without a jump.

The arithmetic is tested as pure functions; the node with real rclpy traffic: a slow scripted policy
(plan time 0.2 s at 10 Hz with 8-action chunks: a quarter of the chunk, a third of what is left of
it after inference) keeps every chunk contiguous with the previous one, plans less often than
replanning back to back (plan_ahead off), and hands over without a jump where off jumps. One
inference runs at a time, so off is contiguous at this plan time as well (it plans back to back);
what plan-ahead adds is the timing (fewer plans, less CPU, fewer dropped actions) and the splice.
Assertions count points and compare stamps the node wrote, not wall-clock durations.
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

from robot_offrl.errors import ConfigError
from robot_offrl_ros.params import parse_config
from robot_offrl_ros.scheduling import LatencyEstimate, plan_due, schedule_chunk, splice

PERIOD = 0.1
PLAN_S = 0.2


# ---------------------------------------------------------------- arithmetic
def test_plan_due_waits_until_the_last_tick_that_still_arrives_in_time() -> None:
    # Chunk's last action at 10.0 s, plans take 0.25 s, 0.05 s margin, 0.1 s periods.
    assert not plan_due(9.5, PERIOD, 10.0, 0.25, 0.05)  # next tick (9.6) still arrives by 9.9
    assert plan_due(9.61, PERIOD, 10.0, 0.25, 0.05)  # waiting for 9.71 would arrive at 10.01
    assert plan_due(9.9, PERIOD, 10.0, 0.25, 0.05)  # already late: plan at once
    assert plan_due(0.0, PERIOD, None, 0.25, 0.05)  # nothing sent yet in this run
    assert plan_due(0.0, PERIOD, 10.0, None, 0.05)  # no plan measured yet
    assert plan_due(0.0, PERIOD, 10.0, 0.05, 0.05)  # plans within a period: replan every period


def test_latency_estimate_is_a_high_percentile_of_a_recent_window() -> None:
    est = LatencyEstimate(window=10, percentile=90.0)
    est.add(0.1)
    est.add(0.1)
    assert est.value() is None  # too few plans to time the next one by: plan as early as possible
    for _ in range(7):
        est.add(0.1)
    est.add(0.5)
    assert est.value() == pytest.approx(0.14)  # numpy's linear percentile: one slow plan raises it
    est.add(float("nan"))
    est.add(-1.0)  # not a duration: ignored
    for _ in range(10):
        est.add(0.2)  # the window forgets the old samples
    assert est.value() == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="percentile"):
        LatencyEstimate(percentile=0.0)
    with pytest.raises(ConfigError, match="min_samples"):
        LatencyEstimate(window=2, min_samples=3)
    assert LatencyEstimate().percentile == 100.0  # the node's: the slowest recent plan


def test_splice_starts_on_the_previous_chunk_and_hands_over_across_the_overlap() -> None:
    prev_t = 10.0 + 0.1 * np.arange(8)  # last action at 10.7
    prev_v = np.stack([np.arange(8.0), -np.arange(8.0)], axis=1)
    chunk = np.full((8, 2), 100.0)
    sched = schedule_chunk(chunk, 10.4, 10.5, 0.1)  # keeps 10.6 ... 11.1
    spliced = splice(prev_t, prev_v, sched, 10.5)
    np.testing.assert_allclose(spliced.values[0], [6.0, -6.0])  # the previous chunk's command at 10.6
    np.testing.assert_allclose(spliced.values[1], [0.5 * 7 + 50, 0.5 * -7 + 50])  # halfway at 10.7
    np.testing.assert_allclose(spliced.values[2:], 100.0)  # past the previous chunk: the new one's own
    np.testing.assert_allclose(spliced.times_from_now, sched.times_from_now)
    assert spliced.dropped == sched.dropped and list(spliced.indices) == list(sched.indices)
    # Between old and new values at every point: a convex blend stays inside any box both are in.
    assert np.all(spliced.values[:, 0] >= 6.0) and np.all(spliced.values[:, 0] <= 100.0)
    # The previous chunk already ran out: nothing to meet, the new chunk is sent as planned.
    assert splice(prev_t - 0.2, prev_v, sched, 10.5) is sched
    assert splice(prev_t, prev_v, schedule_chunk(chunk, 0.0, 10.5, 0.1), 10.5).empty


def test_plan_ahead_parameters_are_checked() -> None:
    assert parse_config({}).plan_ahead == "chunk"
    with pytest.raises(ConfigError, match="plan_ahead must be one of"):
        parse_config({"plan_ahead": "always"})
    with pytest.raises(ConfigError, match="plan_ahead_margin_s must be >= 0"):
        parse_config({"plan_ahead_margin_s": -0.1})


# ---------------------------------------------------------------- the node
@pytest.fixture
def make_rig(ros_context: Any) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(plan_ahead: str, policy: ScriptedPolicy) -> Rig:
        # A high velocity cap: a first point due within microseconds of sending is not capped, so the
        # positions sent are the spliced ones (the cap itself is tested in test_ros_safety.py).
        rig = Rig(ros_context, policy, {"enable_control": True, "control_rate_hz": 1 / PERIOD,
                                        "plan_ahead": plan_ahead, "plan_ahead_margin_s": 0.05,
                                        "max_joint_velocity": [50.0] * 7})
        rigs.append(rig)
        assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
        assert rig.activate(), rig.node._reason
        return rig

    def close(rig: Rig) -> None:  # before the next rig: both nodes would publish on the same topics
        rigs.remove(rig)
        rig.close()

    make.close = close  # type: ignore[attr-defined]
    yield make
    for rig in rigs:
        rig.close()


def slow_policy() -> ScriptedPolicy:
    # A small offset keeps every command far below the velocity cap: positions are the policy's own.
    return ScriptedPolicy(mode="slow", slow_s=PLAN_S, offset=0.001, control_rate_hz=1 / PERIOD)


def stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def point_times(msg: Any) -> np.ndarray:
    return np.array([stamp_s(msg) + p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])


def chunks(rig: Rig) -> list[Any]:
    return [m for m in rig.msgs(TRAJECTORY_TOPIC) if not is_hold(m)]


def hand_overs(msgs: list[Any]) -> list[tuple[float, float]]:
    """Per consecutive pair: (new first point - previous last point in s, jump in rad where they overlap)."""
    out = []
    for prev, new in zip(msgs, msgs[1:], strict=False):
        pt, t0 = point_times(prev), point_times(new)[0]
        jump = 0.0
        if pt[0] <= t0 <= pt[-1]:
            pos = np.array([p.positions for p in prev.points])
            old = np.array([np.interp(t0, pt, pos[:, j]) for j in range(pos.shape[1])])
            jump = float(np.abs(np.array(new.points[0].positions) - old).max())
        out.append((t0 - pt[-1], jump))
    return out


def steady_chunks(make_rig: Any, plan_ahead: str, n: int = 9) -> tuple[list[Any], int]:
    """n chunks after the first two (start-up), and plans made meanwhile minus chunks received.

    The difference is a count, not a time: a plan in flight at either end makes it +-1.
    """
    policy = slow_policy()
    rig = make_rig(plan_ahead, policy)
    assert rig.wait_for(lambda: len(chunks(rig)) >= 2, 10.0)
    rig.clear()
    calls = policy.calls
    assert rig.wait_for(lambda: len(chunks(rig)) >= n, 20.0)
    received, plans = chunks(rig), policy.calls - calls
    make_rig.close(rig)
    return received[:n], plans - len(received)


def test_plan_ahead_keeps_chunks_contiguous_plans_less_and_does_not_jump(make_rig: Any) -> None:
    auto, auto_unsent = steady_chunks(make_rig, "auto")
    off, off_unsent = steady_chunks(make_rig, "off")
    # Each new chunk starts at most one period after the previous chunk's last action: the controller
    # never reaches the end of a chunk and rests (one pair may miss on a stalled, loaded machine).
    late = [gap for gap, _ in hand_overs(auto) if gap > 1.5 * PERIOD]
    assert len(late) <= 1, late
    # Each plan is timed to arrive just before the current chunk runs out, so each chunk runs longer:
    # off replans back to back (every ~PLAN_S), auto about every chunk length - plan time - margin.
    auto_span = np.median(np.diff([stamp_s(m) for m in auto]))
    off_span = np.median(np.diff([stamp_s(m) for m in off]))
    assert auto_span > 1.3 * off_span, (auto_span, off_span)
    assert -1 <= auto_unsent <= 1  # no plan thrown away: every plan sent a chunk
    # The spliced chunk starts on the previous chunk's command; replacing the chunk (off) jumps, since
    # the scripted ramp restarts at every plan.
    auto_jumps = [jump for _, jump in hand_overs(auto)]
    off_jumps = [jump for gap, jump in hand_overs(off) if gap < 0]
    assert max(auto_jumps) < 1e-6, auto_jumps
    assert len(off_jumps) >= 3 and float(np.median(off_jumps)) > 1e-4, off_jumps
    assert -1 <= off_unsent <= 1


@pytest.mark.parametrize("how", ["stop", "deactivate"])
def test_hold_during_an_early_plan_publishes_nothing_afterwards(make_rig: Any, how: str) -> None:
    policy = slow_policy()
    rig = make_rig("auto", policy)
    assert rig.wait_for(lambda: len(chunks(rig)) >= 2, 10.0)

    def early_plan_running() -> bool:  # planning while the last chunk sent still has actions ahead
        last = rig.node._last_sent
        return policy.in_plan and last is not None and float(last[1][-1]) > rig.node._now() + PERIOD

    assert rig.wait_for(early_plan_running, 10.0)
    if how == "stop":
        assert rig.call(Trigger, "/policy_node/stop").success
    else:
        assert rig.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert rig.wait_for(lambda: any(is_hold(m) for m in rig.msgs(TRAJECTORY_TOPIC)), 3.0)
    calls = policy.calls
    rig.wait_for(lambda: False, 3 * PLAN_S)  # the plan in flight finishes; its result must be dropped
    msgs = rig.msgs(TRAJECTORY_TOPIC)
    first_hold = next(i for i, m in enumerate(msgs) if is_hold(m))
    assert msgs[first_hold:] == [msgs[first_hold]], "something was published after the hold"
    assert policy.calls == calls  # and no new plan was started
    assert rig.node.state in ("held", "inactive")
