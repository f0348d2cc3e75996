"""What a controller can ever receive, and how the node stops: real rclpy traffic and a real child process.

- NaN/inf in /joint_states: every message on every controller topic stays finite; the hold uses
  the last finite measurement, or nothing is published and the reason says why.
- SIGINT/SIGTERM to a running ``policy_node`` process: a hold arrives, the exit code is 0.
- Deactivate/cleanup while an inference is in flight: its result is dropped quietly.
- The command gate itself on hand-built messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from rclpy.lifecycle import TransitionCallbackReturn
from ros_policy_double import PANDA_JOINTS, ScriptedDeltaPolicy, ScriptedPolicy
from ros_rig import Q0, TRAJECTORY_TOPIC, Rig, is_hold
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from robot_offrl_ros.outputs import TWIST_AXES, check_command, duration, float_array_msg
from robot_offrl_ros.safety import Bounds, UnsafeCommandError

pytestmark = pytest.mark.ros
FORWARD_TOPIC = "/forward_position_controller/commands"
SERVO_TOPIC = "/servo_node/delta_twist_cmds"
GRIPPER_TOPIC = "/gripper_controller/joint_trajectory"
CHILD = Path(__file__).with_name("policy_node_child.py")
GRIPPER = {"gripper_topic": GRIPPER_TOPIC, "gripper_joint_names": ["panda_finger_joint1", "panda_finger_joint2"]}


@pytest.fixture
def rig_factory(ros_context: Any) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(policy: Any, params: dict[str, Any] | None = None, **kwargs: Any) -> Rig:
        rig = Rig(ros_context, policy, {"enable_control": True, **(params or {})}, **kwargs)
        for topic, msg_type in ((FORWARD_TOPIC, Float64MultiArray), (SERVO_TOPIC, TwistStamped),
                                (GRIPPER_TOPIC, JointTrajectory)):
            rig.listen(topic, msg_type)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


CONTROLLER_TOPICS = (TRAJECTORY_TOPIC, FORWARD_TOPIC, SERVO_TOPIC, GRIPPER_TOPIC)


def numbers(msg: Any) -> list[float]:
    """Every number a controller message carries."""
    if isinstance(msg, JointTrajectory):
        return [v for p in msg.points for f in (p.positions, p.velocities, p.accelerations, p.effort) for v in f]
    if isinstance(msg, Float64MultiArray):
        return list(msg.data)
    t = msg.twist
    return [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]


def all_controller_messages(rig: Rig) -> list[Any]:
    return [m for topic in CONTROLLER_TOPICS for m in rig.msgs(topic)]


def start(rig: Rig) -> Rig:
    assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
    assert rig.activate(), rig.node._reason
    return rig


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("mode", ["trajectory", "forward", "servo"])
def test_nonfinite_joint_states_never_reach_a_controller(rig_factory: Any, mode: str, bad: float) -> None:
    if mode == "servo":
        params = {"output_mode": "servo", "ee_pose_topic": "/ee_pose", "forward_rate_hz": 50.0}
        rig = start(rig_factory(ScriptedDeltaPolicy(), params, pose=(0.5, 0.0, 0.3)))
        topic = SERVO_TOPIC
    else:
        params = {"output_mode": mode, "forward_rate_hz": 50.0, **GRIPPER}
        rig = start(rig_factory(ScriptedPolicy(extra_actions=["gripper"]), params))
        topic = TRAJECTORY_TOPIC if mode == "trajectory" else FORWARD_TOPIC
    assert rig.wait_for(lambda: len(rig.msgs(topic)) >= 3)
    last_finite = rig.q.copy()
    rig.q = last_finite.copy()
    rig.q[2] = bad  # reversed on the wire; the node must still name panda_joint3
    assert rig.wait_for(lambda: rig.node.state == "held")
    assert rig.node._reason.startswith("observation") and "panda_joint3" in rig.node._reason, rig.node._reason
    rig.wait_for(lambda: False, 0.5)  # the bad joint states keep coming
    received = all_controller_messages(rig)
    assert received and all(np.isfinite(numbers(m)).all() for m in received)
    last = rig.msgs(topic)[-1]
    if mode == "trajectory":
        assert is_hold(last)
        np.testing.assert_allclose(last.points[0].positions, last_finite, atol=1e-12)
    elif mode == "forward":
        np.testing.assert_allclose(last.data, last_finite, atol=1e-12)
    else:
        assert numbers(last) == [0.0] * 6
    # ~/start is refused while the joint states are bad, with the reason.
    refused = rig.call(Trigger, "/policy_node/start")
    assert not refused.success and "non-finite" in refused.message


def test_hold_without_any_finite_measurement_publishes_nothing_and_says_why(rig_factory: Any) -> None:
    rig = rig_factory(ScriptedPolicy())
    rig.q = Q0.copy()
    rig.q[0] = np.nan  # from the very first message
    assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
    assert rig.wait_for(lambda: "non-finite" in rig.node._input_error)
    assert rig.node.trigger_activate() == TransitionCallbackReturn.FAILURE
    assert rig.call(SetBool, "/policy_node/estop", SetBool.Request(data=True)).success
    assert "no hold published: no finite joint positions measured yet" in rig.node._reason
    rig.wait_for(lambda: False, 0.3)
    assert all_controller_messages(rig) == []


def test_measured_joints_outside_the_limits_hold_clipped_into_them(rig_factory: Any) -> None:
    """A joint read past its limit still gets a hold (else the controller keeps running the last
    trajectory), at the measured positions clipped into the limits; nothing outside them is sent."""
    rig = start(rig_factory(ScriptedPolicy()))
    assert rig.wait_for(lambda: len(rig.msgs(TRAJECTORY_TOPIC)) >= 2)
    rig.q = Q0.copy()
    rig.q[3] = 0.5  # panda_joint4's upper limit is -0.0698
    assert rig.wait_for(lambda: rig.node.state == "held")
    assert "joint_limit" in rig.node._reason and "panda_joint4" in rig.node._reason
    assert "no hold published" not in rig.node._reason
    upper = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
    assert rig.wait_for(lambda: is_hold(rig.msgs(TRAJECTORY_TOPIC)[-1]))
    held = np.array(rig.msgs(TRAJECTORY_TOPIC)[-1].points[0].positions)
    np.testing.assert_allclose(held, np.minimum(rig.q, upper))
    for msg in rig.msgs(TRAJECTORY_TOPIC):
        assert all(np.all(np.array(p.positions) <= upper) for p in msg.points)


# ---------------------------------------------------------------- shutdown of a real process
def child_env() -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    paths = [str(root), str(root / "sim"), str(root / "hardware"), str(root / "cli"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize(("signum", "mode"), [(signal.SIGINT, "offset"), (signal.SIGTERM, "offset"),
                                              (signal.SIGINT, "slow")])
def test_signal_publishes_a_hold_and_exits_zero(ros_context: Any, signum: int, mode: str) -> None:
    rig = Rig(ros_context, None, with_node=False)
    params = ["autostart:=true", "enable_control:=true", "control_rate_hz:=10.0", "joint_state_timeout_s:=2.0",
              "image_timeout_s:=2.0"]
    args = [sys.executable, str(CHILD), mode, "--ros-args", *[a for p in params for a in ("-p", p)]]
    proc = subprocess.Popen(args, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert rig.wait_for(lambda: len(rig.msgs("/policy_node/action_chunk")) >= 2, 60.0), "child never ran"
        sent_at = time.time()
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        rig.close()
    assert proc.returncode == 0, out
    for needle in ("Traceback", "RCLError", "InvalidHandle", "inference_error"):
        assert needle not in out, out
    after = [m for t, m in rig.received[TRAJECTORY_TOPIC] if t >= sent_at]
    assert after and is_hold(after[-1]), out
    assert list(after[-1].joint_names) == PANDA_JOINTS
    np.testing.assert_allclose(after[-1].points[0].positions, Q0, atol=1e-9)
    assert f"process exit ({signal.Signals(signum).name})" in out


# ---------------------------------------------------------------- transitions during inference
@pytest.mark.parametrize("transition", ["deactivate", "cleanup"])
def test_transition_during_inference_drops_the_late_result_quietly(
    rig_factory: Any, capfd: pytest.CaptureFixture[str], transition: str
) -> None:
    policy = ScriptedPolicy()
    rig = start(rig_factory(policy))
    assert rig.wait_for(lambda: len(rig.msgs(TRAJECTORY_TOPIC)) >= 1)
    policy.slow_s = 1.0
    policy.mode = "slow"
    assert rig.wait_for(lambda: policy.in_plan)
    assert rig.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    if transition == "cleanup":
        assert rig.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert policy.in_plan, "the transition waited for the inference"
    assert rig.wait_for(lambda: is_hold(rig.msgs(TRAJECTORY_TOPIC)[-1]))
    counts = {t: len(rig.msgs(t)) for t in (TRAJECTORY_TOPIC, "/policy_node/action_chunk")}
    assert rig.wait_for(lambda: not policy.in_plan, 5.0)
    rig.wait_for(lambda: False, 0.5)
    assert {t: len(rig.msgs(t)) for t in counts} == counts  # nothing published after the transition
    assert "inference_error" not in rig.node._reason
    err = capfd.readouterr().err
    for needle in ("Traceback", "InvalidHandle", "inference_error"):
        assert needle not in err, err


# ---------------------------------------------------------------- the gate on its own
BOUNDS = Bounds(("a", "b"), np.array([-1.0, 0.0]), np.array([1.0, 2.0]))


def trajectory(names: list[str], positions: list[list[float]], velocities: list[list[float]] | None = None) -> Any:
    msg = JointTrajectory()
    msg.joint_names = names
    for k, pos in enumerate(positions):
        point = JointTrajectoryPoint()
        point.positions = pos
        if velocities is not None:
            point.velocities = velocities[k]
        point.time_from_start = duration(0.1 * (k + 1))
        msg.points.append(point)
    return msg


def test_check_command_accepts_in_bounds_messages_in_any_joint_order() -> None:
    check_command(trajectory(["b", "a"], [[2.0, -1.0], [0.5, 0.5]]), BOUNDS, "t")
    check_command(float_array_msg(np.array([0.0, 1.0])), BOUNDS, "f")


@pytest.mark.parametrize(
    ("msg", "reason", "needle"),
    [
        (trajectory(["a", "b"], [[0.0, np.nan]]), "nonfinite", "NaN/inf"),
        (trajectory(["a", "b"], [[0.0, 1.0]], [[np.inf, 0.0]]), "nonfinite", "velocities"),
        (trajectory(["a", "b"], [[0.0, 2.5]]), "joint_limit", "b=2.5000"),
        (trajectory(["a", "c"], [[0.0, 1.0]]), "names", "among"),
        (trajectory(["a", "b"], [[0.0]]), "names", "1 positions for 2 joints"),
        (trajectory(["a", "b"], []), "names", "without points"),
        (float_array_msg(np.array([0.0, -np.inf])), "nonfinite", "NaN/inf"),
        (float_array_msg(np.array([-1.5, 1.0])), "joint_limit", "a=-1.5000"),
        (float_array_msg(np.array([0.0])), "names", "expected"),
    ],
)
def test_check_command_refuses_bad_messages(msg: Any, reason: str, needle: str) -> None:
    with pytest.raises(UnsafeCommandError, match=needle) as info:
        check_command(msg, BOUNDS, "cmd")
    assert info.value.reason == reason


def test_check_command_bounds_twists() -> None:
    bounds = Bounds(TWIST_AXES, -np.full(6, 0.1), np.full(6, 0.1), "twist_limit")
    msg = TwistStamped()
    msg.twist.linear.x = 0.1
    check_command(msg, bounds, "servo")
    msg.twist.angular.z = -0.2
    with pytest.raises(UnsafeCommandError, match="angular.z") as info:
        check_command(msg, bounds, "servo")
    assert info.value.reason == "twist_limit"
    msg.twist.angular.z = float("nan")
    with pytest.raises(UnsafeCommandError, match="NaN/inf"):
        check_command(msg, bounds, "servo")
