"""An in-process test bench: the policy node and a helper node playing robot + camera, each spun
by its own single-threaded executor thread, as two processes would be.

The helper publishes joint states (shuffled, with extra joints, so name matching is exercised)
and camera frames from timers, and records everything the policy node publishes with the
arrival time, so tests assert on real ROS traffic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from robot_offrl_ros.image_codec import to_compressed_msg, to_image_msg
from robot_offrl_ros.policy_node import ESTOP_QOS, STATUS_QOS, PolicyNode
from robot_offrl_ros.spinning import SpinThread

TRAJECTORY_TOPIC = "/joint_trajectory_controller/joint_trajectory"
Q0 = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
# What image_transport (and this project's camera_node) publishes with: reliable, depth 10.
CAMERA_PUBLISHER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def test_image(height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth, structured RGB picture (gradients and a disc): realistic for JPEG, easy to compare."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([255 * xx / width, 255 * yy / height, 128 + 60 * np.sin(xx / 9.0)], axis=-1)
    disc = (yy - height / 2) ** 2 + (xx - width / 3) ** 2 < (height / 5) ** 2
    img[disc] = (240, 30, 30)
    return img.astype(np.uint8)


test_image.__test__ = False  # a helper, not a pytest test


class Rig:
    """``with_node=False``: only the robot/camera double, for a policy node running in another process."""

    def __init__(self, ctx: Any, policy: Any, params: dict[str, Any] | None = None, *,
                 camera_topic: str = "/camera/image_raw", encoding: str = "rgb8",
                 pose: tuple[float, float, float] | None = None, with_node: bool = True,
                 camera_qos: Any = CAMERA_PUBLISHER_QOS) -> None:
        self.ctx = ctx
        # Generous watchdog bounds by default: a loaded shared CI machine must not trip them by accident;
        # the watchdog test sets its own.
        params = {"control_rate_hz": 10.0, "joint_state_timeout_s": 1.0, "image_timeout_s": 1.0, "pose_timeout_s": 1.0,
                  **(params or {})}
        factory = None if policy is None else (lambda cfg: policy)
        self.node = PolicyNode(policy_factory=factory, context=ctx,
                               parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
                               ) if with_node else None
        self.helper = rclpy.create_node("rig_helper", context=ctx)
        self.image = test_image()
        self.encoding = encoding
        self.camera_on = True
        self.joints_on = True
        self.q = Q0.copy()
        self.pose = pose
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        h = self.helper
        self._js_pub = h.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        msg_type = type(to_compressed_msg(self.image)) if camera_topic.endswith("/compressed") else type(
            to_image_msg(self.image))
        self._cam_pub = h.create_publisher(msg_type, camera_topic, camera_qos)
        self._pose_pub = h.create_publisher(PoseStamped, "/ee_pose", qos_profile_sensor_data)
        self.estop_pub = h.create_publisher(Bool, "/emergency_stop", ESTOP_QOS)
        self.listen(TRAJECTORY_TOPIC, JointTrajectory)
        self.listen("/policy_node/action_chunk", JointTrajectory)
        self.listen("/policy_node/dry_run/trajectory", JointTrajectory)
        self.listen("/diagnostics", DiagnosticArray)
        self.listen("/policy_node/status", String, STATUS_QOS)
        self._timers = [h.create_timer(0.02, self._publish_joints), h.create_timer(0.05, self._publish_camera)]
        self._spinners = [SpinThread(n, context=ctx) for n in (self.node, self.helper) if n is not None]

    # -------------------------------------------------------------- plumbing
    def listen(self, topic: str, msg_type: Any, qos: Any = 10) -> None:
        self.received[topic] = []

        def callback(msg: Any) -> None:
            with self._lock:
                self.received[topic].append((time.time(), msg))  # wall clock, comparable to ROS stamps

        self.helper.create_subscription(msg_type, topic, callback, qos)

    def msgs(self, topic: str) -> list[Any]:
        with self._lock:
            return [m for _, m in self.received[topic]]

    def clear(self, *topics: str) -> None:
        with self._lock:
            for topic in topics or list(self.received):
                self.received[topic].clear()

    def _stamp(self) -> Any:
        return self.helper.get_clock().now().to_msg()

    def _publish_joints(self) -> None:
        if not self.joints_on:
            return
        msg = JointState()
        msg.header.stamp = self._stamp()
        # Reversed order plus finger joints: the node must match by name.
        names = [f"panda_joint{i}" for i in range(1, 8)][::-1] + ["panda_finger_joint1", "panda_finger_joint2"]
        msg.name = names
        msg.position = [float(v) for v in self.q[::-1]] + [0.04, 0.04]
        msg.velocity = [0.0] * len(names)
        self._js_pub.publish(msg)
        if self.pose is not None:
            pose = PoseStamped()
            pose.header.stamp = msg.header.stamp
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = self.pose
            pose.pose.orientation.w = 1.0
            self._pose_pub.publish(pose)

    def _publish_camera(self) -> None:
        if not self.camera_on:
            return
        if self.encoding == "jpeg":
            self._cam_pub.publish(to_compressed_msg(self.image, "jpeg", 95, stamp=self._stamp()))
        else:
            self._cam_pub.publish(to_image_msg(self.image, self.encoding, stamp=self._stamp()))

    # -------------------------------------------------------------- test verbs
    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        return predicate()

    def configure(self) -> Any:
        return self.node.trigger_configure()

    def activate(self, timeout: float = 5.0) -> bool:
        """Retry activation until the observations are fresh (as autostart does)."""
        from rclpy.lifecycle import TransitionCallbackReturn

        return bool(self.wait_for(lambda: self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS, timeout))

    def call(self, srv_type: Any, name: str, request: Any = None, timeout: float = 5.0) -> Any:
        # Clients live as long as the rig: destroying one while the spinning executor may hold it in
        # its wait set only produces noise.
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.helper.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available")
        future = client.call_async(request if request is not None else srv_type.Request())
        if not self.wait_for(future.done, timeout):
            raise TimeoutError(f"service {name} did not answer")
        return future.result()

    def last_diagnostic(self) -> Any:
        diags = self.msgs("/diagnostics")
        return diags[-1].status[0] if diags else None

    def close(self) -> None:
        for spinner in self._spinners:
            spinner.close()
        if self.node is not None:
            self.node.safe_stop("test end")
            self.node.destroy_node()
        self.helper.destroy_node()


def is_hold(msg: JointTrajectory) -> bool:
    return len(msg.points) == 1 and all(v == 0.0 for v in msg.points[0].velocities)


def positions_by_name(msg: JointTrajectory, point: int = 0) -> dict[str, float]:
    return dict(zip(msg.joint_names, msg.points[point].positions, strict=True))


__all__ = ["Float64MultiArray", "PoseStamped", "Q0", "Rig", "TRAJECTORY_TOPIC", "TwistStamped", "is_hold",
           "positions_by_name", "test_image"]
