"""Latency-aware scheduling, trajectory velocities, the watchdog and the streaming timeline (no ROS traffic)."""

from __future__ import annotations

import numpy as np
import pytest

from robot_offrl.errors import ConfigError
from robot_offrl_ros.outputs import Timeline, duration, trajectory_msg
from robot_offrl_ros.scheduling import finite_difference_velocities, schedule_chunk
from robot_offrl_ros.watchdog import Watchdog


def test_actions_in_the_past_are_dropped_and_the_rest_keep_their_times() -> None:
    chunk = np.arange(8, dtype=float)[:, None] * np.ones((1, 2))
    # Observation at t=100.0, inference finished at 100.23: steps 0, 1, 2 (100.0, .1, .2) are gone.
    sched = schedule_chunk(chunk, 100.0, 100.23, 0.1)
    assert sched.dropped == 3 and list(sched.indices) == [3, 4, 5, 6, 7]
    np.testing.assert_allclose(sched.times_from_now, [0.07, 0.17, 0.27, 0.37, 0.47])
    np.testing.assert_allclose(sched.values[:, 0], [3, 4, 5, 6, 7])
    # A lead time drops what cannot reach the controller in time.
    assert schedule_chunk(chunk, 100.0, 100.23, 0.1, min_lead_s=0.1).dropped == 4
    # Everything late: nothing to send.
    assert schedule_chunk(chunk, 100.0, 101.0, 0.1).empty


@pytest.mark.parametrize(
    ("chunk", "dt", "lead", "needle"),
    [(np.zeros((0, 2)), 0.1, 0.0, "steps > 0"), (np.zeros(3), 0.1, 0.0, "action_dim"),
     (np.zeros((2, 2)), 0.0, 0.0, "period"), (np.zeros((2, 2)), 0.1, -1.0, "min_lead")],
)
def test_schedule_rejects_bad_input(chunk: np.ndarray, dt: float, lead: float, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        schedule_chunk(chunk, 0.0, 0.0, dt, lead)


def test_finite_difference_velocities_end_at_rest() -> None:
    pos = np.array([[0.0], [1.0], [3.0], [4.0]])
    vel = finite_difference_velocities(pos, np.array([0.5, 1.0, 1.5, 2.0]))
    np.testing.assert_allclose(vel[:, 0], [2.0, 3.0, 3.0, 0.0])
    np.testing.assert_allclose(finite_difference_velocities(pos[:1], np.array([0.1])), [[0.0]])
    with pytest.raises(ConfigError, match="strictly increase"):
        finite_difference_velocities(pos[:2], np.array([0.2, 0.2]))


def test_trajectory_msg_times_and_velocities() -> None:
    msg = trajectory_msg(["a", "b"], np.array([[0.0, 0.0], [0.1, 0.2], [0.2, 0.4]]), np.array([0.05, 1.15, 2.25]))
    assert msg.joint_names == ["a", "b"]
    assert [(p.time_from_start.sec, p.time_from_start.nanosec) for p in msg.points] == [
        (0, 50_000_000), (1, 150_000_000), (2, 250_000_000)]
    assert list(msg.points[-1].velocities) == [0.0, 0.0]
    assert duration(0.9999999999).sec in (0, 1)


def test_watchdog_reports_missing_and_stale_inputs() -> None:
    dog = Watchdog({"joints": 0.1, "cam": 0.25})
    assert [s.name for s in dog.stale(10.0)] == ["joints", "cam"]
    assert "nothing received" in str(dog.stale(10.0)[0])
    dog.feed("joints", 10.0)
    dog.feed("cam", 10.0)
    assert dog.stale(10.09) == []
    stale = dog.stale(10.2)
    assert [s.name for s in stale] == ["joints"] and "200 ms old (limit 100 ms)" in str(stale[0])
    dog.feed("joints", 9.0)  # an out-of-order older stamp never makes an input look fresher or older
    assert dog.age("joints", 10.0) == pytest.approx(0.0)
    dog.reset()
    assert len(dog.stale(10.0)) == 2
    with pytest.raises(KeyError, match="no input named"):
        dog.feed("lidar", 1.0)
    with pytest.raises(ConfigError, match="must be > 0"):
        Watchdog({"cam": 0.0})


def test_timeline_interpolates_and_steps() -> None:
    tl = Timeline()
    assert tl.interpolate(0.0) is None and tl.step(0.0, 0.1) is None
    tl.set(np.array([1.0, 2.0]), np.array([[0.0], [10.0]]))
    np.testing.assert_allclose(tl.interpolate(1.25), [2.5])
    np.testing.assert_allclose(tl.interpolate(0.0), [0.0])
    np.testing.assert_allclose(tl.interpolate(5.0), [10.0])
    np.testing.assert_allclose(tl.step(1.5, 0.1), [0.0])
    np.testing.assert_allclose(tl.step(2.05, 0.1), [10.0])
    assert tl.step(2.2, 0.1) is None


def _stamped_trajectory(stamp_s: float, first_s: float, n: int, period_s: float):
    from builtin_interfaces.msg import Duration, Time
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    msg = JointTrajectory()
    msg.header.stamp = Time(sec=int(stamp_s), nanosec=int(round((stamp_s % 1) * 1e9)))
    for k in range(n):
        offset = first_s + k * period_s
        msg.points.append(JointTrajectoryPoint(
            positions=[float(k)], time_from_start=Duration(sec=int(offset), nanosec=int(round((offset % 1) * 1e9)))))
    return msg


def test_executed_actions_follow_arrivals_not_stamps() -> None:
    """A node replanning every 50 ms period whose commands arrive one period after their stamp: the
    first point is due on arrival (dropped, as sim_arm_controller.py drops it), the second is reached
    just as the next message arrives, so each message executes one point: 20 actions/s."""
    from robot_offrl_ros.command_stats import executed_stream

    period = 0.05
    trajs = [(100.0 + (i + 1) * period, _stamped_trajectory(100.0 + i * period, period, 8, period)) for i in range(20)]
    executed, _ = executed_stream(trajs)
    # Each message: the point due at the next arrival; the last one runs out its chunk (7 points after arrival).
    assert executed.size == 19 + 7
    np.testing.assert_allclose(np.diff(executed), period, atol=1e-6)
    # A message that arrives after all of its points are due executes nothing (the controller refuses it).
    late = [(200.0, _stamped_trajectory(100.0, period, 8, period))]
    assert executed_stream(late)[0].size == 0
