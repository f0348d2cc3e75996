"""Camera QoS: reliable by default (big frames arrive whole), best_effort on request, and a clear
reason when the publisher's QoS cannot feed the subscription."""

from __future__ import annotations

from typing import Any

import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from ros_policy_double import ScriptedPolicy
from ros_rig import Rig

from robot_offrl.errors import ConfigError
from robot_offrl_ros.params import parse_config

pytestmark = pytest.mark.ros


@pytest.fixture
def rigs(ros_context: Any) -> Any:
    made: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        made.append(Rig(ros_context, ScriptedPolicy(), **kwargs))
        return made[-1]

    yield make
    for rig in made:
        rig.close()


def test_best_effort_camera_runs_with_camera_reliability_best_effort(rigs: Any) -> None:
    rig = rigs(params={"camera_reliability": "best_effort"}, camera_qos=qos_profile_sensor_data)
    assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
    assert rig.activate(), rig.node._reason


def test_best_effort_camera_against_a_reliable_subscription_is_refused_with_the_fix(rigs: Any) -> None:
    rig = rigs(camera_qos=qos_profile_sensor_data)  # camera_reliability defaults to reliable
    assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
    assert rig.wait_for(lambda: rig.node._qos_errors, 10.0)
    assert rig.node.trigger_activate() == TransitionCallbackReturn.FAILURE
    reason = rig.node._reason
    assert "/camera/image_raw: nothing received yet" in reason and "camera_reliability: best_effort" in reason
    assert rig.wait_for(lambda: (d := rig.last_diagnostic()) is not None
                        and any(kv.key == "qos_error[/camera/image_raw]" for kv in d.values))


def test_camera_reliability_is_validated() -> None:
    with pytest.raises(ConfigError, match="camera_reliability must be one of"):
        parse_config({"camera_reliability": "sometimes"})
