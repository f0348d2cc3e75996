"""The lifecycle policy node with real rclpy traffic: chunks, watchdog, e-stop, bad policies, dry run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from ros_policy_double import PANDA_JOINTS, PANDA_UPPER, ScriptedPolicy
from ros_rig import Q0, TRAJECTORY_TOPIC, Rig, is_hold, positions_by_name
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

pytestmark = pytest.mark.ros
PERIOD = 0.1


@pytest.fixture
def make_rig(ros_context: Any) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(policy: Any, params: dict[str, Any] | None = None, **kwargs: Any) -> Rig:
        rig = Rig(ros_context, policy, {"enable_control": True, **(params or {})}, **kwargs)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def running_rig(make_rig: Any, policy: Any, params: dict[str, Any] | None = None, **kwargs: Any) -> Rig:
    rig = make_rig(policy, params, **kwargs)
    assert rig.configure() == TransitionCallbackReturn.SUCCESS, rig.node._reason
    assert rig.activate(), rig.node._reason
    return rig


def chunks(rig: Rig) -> list[Any]:
    return [m for m in rig.msgs(TRAJECTORY_TOPIC) if not is_hold(m)]


def holds(rig: Rig) -> list[Any]:
    return [m for m in rig.msgs(TRAJECTORY_TOPIC) if is_hold(m)]


def status(rig: Rig) -> dict[str, Any]:
    msgs = rig.msgs("/policy_node/status")
    return json.loads(msgs[-1].data) if msgs else {}


def stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def tfs(point: Any) -> float:
    return point.time_from_start.sec + point.time_from_start.nanosec * 1e-9


def test_chunks_arrive_at_control_rate_with_increasing_times(make_rig: Any, policy: ScriptedPolicy) -> None:
    # plan_ahead auto replans a fast policy every period (the default, chunk, once per chunk:
    # tests/ros/test_ros_action_timing.py); the chunk checks below hold in every mode.
    rig = running_rig(make_rig, policy, {"plan_ahead": "auto"})
    assert rig.wait_for(lambda: len(chunks(rig)) >= 8)
    received = chunks(rig)
    for msg in received:
        assert list(msg.joint_names) == PANDA_JOINTS
        times = [tfs(p) for p in msg.points]
        assert times[0] > 0 and all(b > a for a, b in zip(times, times[1:], strict=False))
        assert all(v == 0.0 for v in msg.points[-1].velocities)
        # Joint states arrive reversed; the command must still be q0 + ramp per joint *name*.
        final = np.array(msg.points[-1].positions)
        np.testing.assert_allclose(final, Q0 + policy.offset, atol=1e-5)
    # One chunk per control period, measured on the node's own stamps (robust to test-machine load).
    intervals = np.diff([stamp_s(m) for m in received])
    assert 0.5 * PERIOD < float(np.median(intervals)) < 1.5 * PERIOD
    # The observation the policy saw: joints ordered by joint_names, image at the schema shape.
    np.testing.assert_allclose(policy.last_obs["joint_pos"], Q0, atol=1e-6)
    assert policy.last_obs["agentview_image"].shape == (84, 84, 3)
    # Actions already in the past at publication are dropped (the first is due at the obs stamp).
    assert all(len(m.points) <= policy.n_action_steps for m in received)


def test_stale_camera_holds_reports_error_and_waits_for_start(make_rig: Any, policy: ScriptedPolicy) -> None:
    timeout = 0.2  # four frames of the rig's 20 Hz camera
    rig = running_rig(make_rig, policy, {"image_timeout_s": timeout})
    assert rig.wait_for(lambda: len(chunks(rig)) >= 3)
    rig.clear()
    rig.camera_on = False
    assert rig.wait_for(lambda: holds(rig), 3.0)
    # Within two control periods of the image going stale: at most timeout/period + 2 chunks slipped out.
    first_hold = next(i for i, m in enumerate(rig.msgs(TRAJECTORY_TOPIC)) if is_hold(m))
    assert first_hold <= int(round(timeout / PERIOD)) + 4  # slack for a loaded CI machine
    np.testing.assert_allclose(holds(rig)[0].points[0].positions, Q0, atol=1e-9)
    assert rig.wait_for(lambda: (d := rig.last_diagnostic()) is not None and d.level == DiagnosticStatus.ERROR)
    assert "watchdog" in rig.last_diagnostic().message
    assert status(rig)["state"] == "held" and status(rig)["reason"].startswith("watchdog")
    # Nothing more, even once the camera is back, until ~/start.
    count = len(rig.msgs(TRAJECTORY_TOPIC))
    rig.camera_on = True
    rig.wait_for(lambda: False, 0.6)
    assert len(rig.msgs(TRAJECTORY_TOPIC)) == count
    assert rig.call(Trigger, "/policy_node/start").success
    assert rig.wait_for(lambda: len(rig.msgs(TRAJECTORY_TOPIC)) > count + 2)


def test_start_is_refused_while_observations_are_stale(make_rig: Any, policy: ScriptedPolicy) -> None:
    rig = running_rig(make_rig, policy, {"image_timeout_s": 0.2})
    rig.camera_on = False
    assert rig.wait_for(lambda: rig.node.state == "held", 3.0)
    response = rig.call(Trigger, "/policy_node/start")
    assert not response.success and "/camera/image_raw" in response.message


@pytest.mark.parametrize("via", ["topic", "service"])
def test_estop_stops_commands_immediately(make_rig: Any, policy: ScriptedPolicy, via: str) -> None:
    rig = running_rig(make_rig, policy)
    assert rig.wait_for(lambda: len(chunks(rig)) >= 2)
    rig.clear()
    if via == "topic":
        rig.estop_pub.publish(Bool(data=True))
    else:
        assert rig.call(SetBool, "/policy_node/estop", SetBool.Request(data=True)).success
    assert rig.wait_for(lambda: holds(rig), 2.0)
    assert rig.node.state == "held"
    rig.wait_for(lambda: False, 0.4)
    after = rig.msgs(TRAJECTORY_TOPIC)
    assert is_hold(after[-1]) and len(chunks(rig)) <= 1  # at most one chunk that was already in flight
    assert rig.wait_for(lambda: rig.last_diagnostic() is not None and "estop" in rig.last_diagnostic().message)
    refused = rig.call(Trigger, "/policy_node/start")
    assert not refused.success and "emergency stop" in refused.message
    if via == "topic":
        rig.estop_pub.publish(Bool(data=False))
        assert rig.wait_for(lambda: not rig.node._estop)
    else:
        assert rig.call(SetBool, "/policy_node/estop", SetBool.Request(data=False)).success
    assert rig.node.state == "held"  # releasing does not restart by itself
    assert rig.call(Trigger, "/policy_node/start").success
    n = len(chunks(rig))
    assert rig.wait_for(lambda: len(chunks(rig)) > n + 1)


def test_estop_latched_before_activation_blocks_it(make_rig: Any, policy: ScriptedPolicy) -> None:
    rig = make_rig(policy)
    rig.estop_pub.publish(Bool(data=True))  # transient-local: the node sees it when it subscribes
    assert rig.configure() == TransitionCallbackReturn.SUCCESS
    assert rig.wait_for(lambda: rig.node._estop)
    assert rig.node.trigger_activate() == TransitionCallbackReturn.FAILURE


def test_nan_at_warm_up_fails_configure(make_rig: Any, policy: ScriptedPolicy) -> None:
    policy.mode = "nan"
    rig = make_rig(policy)
    assert rig.configure() == TransitionCallbackReturn.FAILURE
    assert "warm-up" in rig.node._reason and "NaN" in rig.node._reason


def test_nan_actions_never_reach_the_controller(make_rig: Any, policy: ScriptedPolicy) -> None:
    rig = make_rig(policy)
    assert rig.configure() == TransitionCallbackReturn.SUCCESS
    policy.mode = "nan"
    assert rig.activate()
    assert rig.wait_for(lambda: rig.node.state == "held")
    assert rig.wait_for(lambda: holds(rig))
    for msg in rig.msgs(TRAJECTORY_TOPIC):
        assert all(np.isfinite(p.positions).all() for p in msg.points)
    assert chunks(rig) == []
    assert rig.wait_for(lambda: (d := rig.last_diagnostic()) is not None and d.level == DiagnosticStatus.ERROR)
    assert "nonfinite" in rig.last_diagnostic().message
    # The raw chunk is still logged for debugging.
    assert rig.wait_for(lambda: rig.msgs("/policy_node/action_chunk"))


def test_runtime_refusing_non_finite_actions_holds_as_nonfinite(make_rig: Any, policy: ScriptedPolicy) -> None:
    """PolicyRuntime raises NonFiniteActionError (a UserError): the hold names the policy, not the sensors."""
    rig = make_rig(policy)
    assert rig.configure() == TransitionCallbackReturn.SUCCESS
    policy.mode = "nonfinite_error"
    assert rig.activate()
    assert rig.wait_for(lambda: rig.node.state == "held")
    assert rig.wait_for(lambda: holds(rig))
    assert chunks(rig) == []
    assert rig.wait_for(lambda: (d := rig.last_diagnostic()) is not None and d.level == DiagnosticStatus.ERROR)
    assert "nonfinite" in rig.last_diagnostic().message and "observation" not in rig.last_diagnostic().message


def test_out_of_limit_actions_are_clamped(make_rig: Any, policy: ScriptedPolicy) -> None:
    policy.mode = "out_of_limits"  # warm-up accepts it: limits are enforced per command, not at load
    rig = running_rig(make_rig, policy)
    assert rig.wait_for(lambda: len(chunks(rig)) >= 3)
    vmax_step = 2.175 * PERIOD
    for msg in chunks(rig):
        j1 = [positions_by_name(msg, k)["panda_joint1"] for k in range(len(msg.points))]
        assert max(j1) <= PANDA_UPPER[0] + 1e-9
        # Velocity cap: never more than max velocity times the time to each point.
        assert j1[0] - Q0[0] <= vmax_step * tfs(msg.points[0]) / PERIOD + 1e-6
    assert rig.node.state == "running", rig.node._reason
    assert rig.wait_for(lambda: (d := rig.last_diagnostic()) is not None and d.level == DiagnosticStatus.WARN), (
        rig.last_diagnostic()
    )
    values = {kv.key: kv.value for kv in rig.last_diagnostic().values}
    assert int(values["limit_clamped"]) > 0


def test_out_of_limit_actions_hold_when_configured(make_rig: Any, policy: ScriptedPolicy) -> None:
    policy.mode = "out_of_limits"
    rig = running_rig(make_rig, policy, {"limit_violation": "hold"})
    assert rig.wait_for(lambda: holds(rig))
    assert chunks(rig) == []
    assert "joint_limit" in rig.node._reason and "panda_joint1" in rig.node._reason


def test_inference_exception_holds_and_reports(make_rig: Any, policy: ScriptedPolicy) -> None:
    rig = running_rig(make_rig, policy)
    assert rig.wait_for(lambda: len(chunks(rig)) >= 1)
    policy.mode = "raise"
    assert rig.wait_for(lambda: rig.node.state == "held")
    assert "inference_error" in rig.node._reason and "scripted inference failure" in rig.node._reason
    assert rig.wait_for(lambda: is_hold(rig.msgs(TRAJECTORY_TOPIC)[-1]))
    # Still alive and answering: reset and restart once the policy behaves again.
    assert rig.call(Trigger, "/policy_node/reset_policy").success
    policy.mode = "offset"
    assert rig.call(Trigger, "/policy_node/start").success
    n = len(chunks(rig))
    assert rig.wait_for(lambda: len(chunks(rig)) > n)


def test_estop_and_services_answer_while_inference_is_running(make_rig: Any, policy: ScriptedPolicy) -> None:
    """Inference has its own thread: a 3 s plan must not delay the e-stop or any service."""
    rig = running_rig(make_rig, policy)
    assert rig.wait_for(lambda: len(chunks(rig)) >= 1)
    policy.mode = "slow"
    assert rig.wait_for(lambda: policy.in_plan)
    sent = len(chunks(rig))
    assert rig.call(Trigger, "/policy_node/reset_policy").success
    assert rig.call(SetBool, "/policy_node/estop", SetBool.Request(data=True)).success
    assert rig.wait_for(lambda: holds(rig))
    assert policy.in_plan, "the e-stop waited for the slow plan to finish"
    # The chunk that was being computed when the e-stop came never reaches the controller.
    assert rig.wait_for(lambda: not policy.in_plan)
    rig.wait_for(lambda: False, 0.3)
    assert len(chunks(rig)) == sent and rig.node.state == "held"


def test_dry_run_publishes_action_chunk_only(make_rig: Any, policy: ScriptedPolicy) -> None:
    rig = running_rig(make_rig, policy, {"enable_control": False})
    assert rig.wait_for(lambda: len(rig.msgs("/policy_node/action_chunk")) >= 3)
    assert rig.wait_for(lambda: len(rig.msgs("/policy_node/dry_run/trajectory")) >= 3)
    rig.call(SetBool, "/policy_node/estop", SetBool.Request(data=True))  # holds go to dry_run too
    rig.wait_for(lambda: False, 0.3)
    assert rig.msgs(TRAJECTORY_TOPIC) == []
    logged = rig.msgs("/policy_node/action_chunk")[-1]
    assert list(logged.joint_names) == PANDA_JOINTS and len(logged.points) == policy.n_action_steps
    assert rig.wait_for(lambda: status(rig)) and status(rig)["enable_control"] is False


def test_activation_waits_for_every_required_topic(make_rig: Any, policy: ScriptedPolicy) -> None:
    rig = make_rig(policy)
    rig.camera_on = False
    assert rig.configure() == TransitionCallbackReturn.SUCCESS
    rig.wait_for(lambda: False, 0.3)
    assert rig.node.trigger_activate() == TransitionCallbackReturn.FAILURE
    assert "/camera/image_raw" in rig.node._reason
    rig.camera_on = True
    assert rig.activate()


def test_deactivate_holds_and_cancels_the_timer(make_rig: Any, policy: ScriptedPolicy) -> None:
    rig = running_rig(make_rig, policy)
    assert rig.wait_for(lambda: len(chunks(rig)) >= 2)
    assert rig.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert rig.wait_for(lambda: is_hold(rig.msgs(TRAJECTORY_TOPIC)[-1]))
    calls = policy.calls
    rig.wait_for(lambda: False, 0.4)
    assert policy.calls == calls and rig.node.state == "inactive"
    assert rig.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS


@pytest.mark.parametrize(
    ("policy_kwargs", "params", "needle"),
    [
        ({"joint_names": [f"j{i}" for i in range(7)]}, {}, "joint name(s)"),
        ({"joint_names": ["a", "b"]}, {}, "check joint_names"),
        ({"image_keys": {"wrist_image": (84, 84, 3)}}, {}, "wrist_image"),
        ({}, {"camera_topics": ["/a", "/b"]}, "pair up"),
        ({}, {"joint_upper_limits": [1.0]}, "joint_upper_limits"),
        ({}, {"output_mode": "servo", "ee_pose_topic": "/ee_pose"}, "delta"),
        ({"scored_actions": 4}, {}, "critic.action_steps=4"),
    ],
)
def test_bad_configuration_fails_configure_with_a_clear_reason(
    make_rig: Any, policy_kwargs: dict[str, Any], params: dict[str, Any], needle: str
) -> None:
    rig = make_rig(ScriptedPolicy(**policy_kwargs), params)
    assert rig.configure() == TransitionCallbackReturn.FAILURE
    assert needle in rig.node._reason
    assert rig.wait_for(lambda: "configure failed" in status(rig).get("reason", ""))


def test_default_factory_needs_a_checkpoint(make_rig: Any) -> None:
    rig = make_rig(None)
    assert rig.configure() == TransitionCallbackReturn.FAILURE
    assert "checkpoint is empty" in rig.node._reason


def test_autostart_configures_and_activates_once_observations_are_fresh(make_rig: Any, policy: ScriptedPolicy) -> None:
    rig = make_rig(policy, {"autostart": True})
    assert rig.wait_for(lambda: rig.node.state == "running", 8.0), rig.node._reason
    assert rig.wait_for(lambda: len(chunks(rig)) >= 1)


def test_lifecycle_services_drive_the_node_like_ros2_lifecycle_set(make_rig: Any, policy: ScriptedPolicy) -> None:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    rig = make_rig(policy)
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        request = ChangeState.Request()
        request.transition.id = transition
        rig.wait_for(lambda: rig.node._watchdog is None or not rig.node._watchdog.stale(rig.node._now()), 3.0)
        assert rig.call(ChangeState, "/policy_node/change_state", request).success
    assert rig.call(GetState, "/policy_node/get_state").current_state.label == "active"
    assert rig.wait_for(lambda: len(chunks(rig)) >= 1)
