"""Output modes and input encodings through the running node: forward, servo, gripper, compressed images."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from rclpy.lifecycle import TransitionCallbackReturn
from ros_policy_double import PANDA_UPPER, ScriptedDeltaPolicy, ScriptedPolicy
from ros_rig import Q0, TRAJECTORY_TOPIC, Rig, is_hold
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_offrl.errors import ConfigError
from robot_offrl_ros.image_codec import fit_image
from robot_offrl_ros.params import parse_config

pytestmark = pytest.mark.ros
FORWARD_TOPIC = "/forward_position_controller/commands"
SERVO_TOPIC = "/servo_node/delta_twist_cmds"
GRIPPER_TOPIC = "/gripper_controller/joint_trajectory"


@pytest.fixture
def rig_factory(ros_context: Any) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(policy: Any, params: dict[str, Any], **kwargs: Any) -> Rig:
        rig = Rig(ros_context, policy, {"enable_control": True, **params}, **kwargs)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def start(rig: Rig) -> Rig:
    assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
    assert rig.activate(), rig.node._reason
    return rig


@pytest.mark.parametrize(("encoding", "topic"), [("rgb8", "/camera/image_raw"), ("bgr8", "/camera/image_raw"),
                                                 ("jpeg", "/camera/image_raw/compressed")])
def test_every_encoding_reaches_the_policy_as_the_same_tensor(rig_factory: Any, encoding: str, topic: str) -> None:
    policy = ScriptedPolicy()
    rig = start(rig_factory(policy, {"camera_topics": [topic]}, camera_topic=topic, encoding=encoding))
    assert rig.wait_for(lambda: policy.calls >= 2)
    expected = fit_image(rig.image, (84, 84, 3))
    got = policy.last_obs["agentview_image"]
    assert got.shape == (84, 84, 3) and got.dtype == np.uint8
    if encoding == "jpeg":
        assert np.abs(got.astype(float) - expected).mean() < 6.0
    else:
        np.testing.assert_array_equal(got, expected)


def test_forward_mode_streams_interpolated_commands_and_gripper(rig_factory: Any) -> None:
    policy = ScriptedPolicy(extra_actions=["gripper"])
    params = {"output_mode": "forward", "forward_rate_hz": 50.0, "gripper_topic": GRIPPER_TOPIC,
              "gripper_joint_names": ["panda_finger_joint1", "panda_finger_joint2"]}
    rig = rig_factory(policy, params)
    rig.listen(FORWARD_TOPIC, Float64MultiArray)
    rig.listen(GRIPPER_TOPIC, JointTrajectory)
    start(rig)
    assert rig.wait_for(lambda: len(rig.msgs(FORWARD_TOPIC)) >= 30)
    commands = np.array([m.data for m in rig.msgs(FORWARD_TOPIC)])
    assert commands.shape[1] == 7 and np.isfinite(commands).all()
    assert np.all(commands <= np.array(PANDA_UPPER) + 1e-9)
    assert np.all(commands >= Q0 - 1e-9) and np.all(commands <= Q0 + policy.offset + 1e-9)
    # The node interpolates between policy steps: several commands per predicted chunk.
    assert len(rig.msgs(FORWARD_TOPIC)) >= 2 * len(rig.msgs("/policy_node/action_chunk"))
    assert rig.msgs(TRAJECTORY_TOPIC) == []
    grip = rig.msgs(GRIPPER_TOPIC)[-1]
    assert list(grip.joint_names) == ["panda_finger_joint1", "panda_finger_joint2"]
    # Action 0.5 in [-3, 3] -> 58% of the way from open (0.04) to closed (0.0).
    np.testing.assert_allclose(grip.points[0].positions, [0.04 * (1 - 3.5 / 6)] * 2, atol=1e-6)
    # A hold sends the measured joints at once and stops the stream.
    assert rig.call(Trigger, "/policy_node/stop").success
    assert rig.wait_for(lambda: np.allclose(rig.msgs(FORWARD_TOPIC)[-1].data, Q0))
    n = len(rig.msgs(FORWARD_TOPIC))
    rig.wait_for(lambda: False, 0.3)
    assert len(rig.msgs(FORWARD_TOPIC)) == n


def test_servo_mode_publishes_twists_clipped_to_the_workspace(rig_factory: Any) -> None:
    params = {"output_mode": "servo", "ee_pose_topic": "/ee_pose", "forward_rate_hz": 50.0,
              "workspace_min": [0.2, -0.5, 0.0], "workspace_max": [0.8, 0.5, 0.7]}
    rig = rig_factory(ScriptedDeltaPolicy(), params, pose=(0.5, 0.0, 0.3))
    rig.listen(SERVO_TOPIC, TwistStamped)
    start(rig)
    assert rig.wait_for(lambda: any(m.twist.linear.x > 0 for m in rig.msgs(SERVO_TOPIC)))
    moving = [m for m in rig.msgs(SERVO_TOPIC) if m.twist.linear.x > 0][-1]
    assert moving.twist.linear.x == pytest.approx(0.05) and moving.twist.angular.z == pytest.approx(0.1)
    assert moving.header.frame_id == "base_link"
    # At the +x face the outward velocity is cut so one stream step cannot cross it.
    rig.pose = (0.7995, 0.0, 0.3)
    assert rig.wait_for(lambda: rig.msgs(SERVO_TOPIC)[-1].twist.linear.x <= 0.0005 / 0.02 + 1e-9)
    # Outside the box: hold (zero twist) and latch.
    rig.pose = (0.9, 0.0, 0.3)
    assert rig.wait_for(lambda: rig.node.state == "held")
    assert "workspace" in rig.node._reason
    def zero(m: TwistStamped) -> bool:
        t = m.twist
        return (t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z) == (0,) * 6

    assert rig.wait_for(lambda: zero(rig.msgs(SERVO_TOPIC)[-1]))
    n = len(rig.msgs(SERVO_TOPIC))
    rig.wait_for(lambda: False, 0.3)
    assert all(zero(m) for m in rig.msgs(SERVO_TOPIC)[n - 1:])  # the stream stopped on the zero twist


def test_servo_mode_refuses_unbounded_actions_and_bad_scales(rig_factory: Any) -> None:
    """The twist check is |action bound| x scale: unbounded actions or a scale <= 0 would void it."""
    params = {"output_mode": "servo", "ee_pose_topic": "/ee_pose"}
    rig = rig_factory(ScriptedDeltaPolicy(bounded=False), params, pose=(0.5, 0.0, 0.3))
    assert rig.configure() == TransitionCallbackReturn.FAILURE
    assert "finite action bounds" in rig.node._reason
    for name in ("servo_linear_scale", "servo_angular_scale"):
        with pytest.raises(ConfigError, match=f"{name} must be > 0"):
            parse_config({name: -0.1})


def test_joint_modes_hold_when_the_end_effector_leaves_the_box(rig_factory: Any) -> None:
    rig = start(rig_factory(ScriptedPolicy(), {"ee_pose_topic": "/ee_pose"}, pose=(0.5, 0.0, 0.3)))
    assert rig.wait_for(lambda: len(rig.msgs(TRAJECTORY_TOPIC)) >= 2)
    rig.pose = (0.5, 0.0, -0.2)
    assert rig.wait_for(lambda: rig.node.state == "held")
    assert "workspace" in rig.node._reason
    assert rig.wait_for(lambda: is_hold(rig.msgs(TRAJECTORY_TOPIC)[-1]))
