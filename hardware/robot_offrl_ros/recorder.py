"""Record demonstrations on a real arm from ROS 2 topics into an episode store.

Observations (cameras, joint states, optional end-effector pose) and the commanded action (a leader
arm's JointState, a SpaceMouse TwistStamped, or the JointTrajectory / Float64MultiArray sent to the
controller) arrive on their own topics at their own rates. Each control tick takes, for every input,
the newest message stamped at or before the tick; if any input has nothing that recent within one
control period the whole step is refused (not padded), because a step that pairs a fresh image with a
stale action teaches the policy something the operator never did. Observation keys are the ones
``observations.py`` builds for the policy node, so recorded data trains a policy the node can run.
What happens to a message once it arrives (value, stamp, alignment, step) lives in
``record_inputs.py``, without rclpy, so that ``bag_import.py`` replays recorded bags through the same code.

The record loop and its episode controls are the library's (``robot_offrl.record``), the same the sim
recorder drives; this module is a ``RecordBackend`` plus a second
node only exposes them as std_srvs services and forwards calls to a handler the session installs.
Each service call waits for the record loop to answer, so the services spin in a thread apart from
the subscriptions: a slow ``~/save`` never delays an input message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_offrl.data import StoreSchema
from robot_offrl.record.backend import RecordBackend, Refused, Step

from .qos import camera_qos
from .record_inputs import (  # noqa: F401  (re-exported: the recorder's public names live here too)
    ACTION_SOURCES,
    RECORDER_PARAM_NAMES,
    RECORDER_PARAMS,
    TWIST_NAMES,
    RecorderConfig,
    RecordInputs,
    SilentTopicError,
    StaleInputs,
    TopicBuffer,
    input_types,
    load_recorder_yaml,
    parse_recorder_config,
    recorder_attrs,
    store_schema,
)
from .spinning import SpinThread

NODE_NAME = "recorder_node"  # serves ~/start, ~/save, ...
INPUTS_NODE_NAME = "recorder_inputs"  # subscribes the configured topics
_MSG_CLASSES: dict[str, Any] = {
    "sensor_msgs/msg/JointState": JointState, "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CompressedImage": CompressedImage, "geometry_msgs/msg/PoseStamped": PoseStamped,
    "geometry_msgs/msg/TwistStamped": TwistStamped, "trajectory_msgs/msg/JointTrajectory": JointTrajectory,
    "std_msgs/msg/Float64MultiArray": Float64MultiArray, "std_msgs/msg/Float64": Float64,
}


class RecorderNode(Node):
    """Subscribes every configured input into ``RecordInputs`` (record_inputs.py), which builds the steps."""

    def __init__(self, cfg: RecorderConfig, *, context: Any = None, node_name: str = INPUTS_NODE_NAME) -> None:
        super().__init__(node_name, context=context,
                         parameter_overrides=[Parameter("use_sim_time", value=cfg.use_sim_time)])
        self.cfg = cfg
        self.inputs = RecordInputs(cfg)
        self.errors = self.inputs.errors
        self.buffers = self.inputs.buffers
        for topic, type_name in input_types(cfg).items():
            qos: QoSProfile = (camera_qos(cfg.camera_reliability) if topic in cfg.camera_topics
                               else qos_profile_sensor_data)
            self.create_subscription(_MSG_CLASSES[type_name], topic,
                                     lambda m, t=topic: self.inputs.add_guarded(t, m, self.now_s()), qos)

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def silent_topics(self) -> list[str]:
        return self.inputs.silent_topics()

    def wait_for_topics(self, timeout_s: float) -> None:
        """Refuse to start while any input is silent; the error names each silent topic."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.silent_topics():
            time.sleep(0.02)
        silent = self.silent_topics()
        if silent:
            raise SilentTopicError(
                f"refusing to record: {', '.join(silent)} published nothing within {timeout_s:.1f} s. "
                "Check the driver is running, the topic name (`ros2 topic list`, `ros2 topic hz TOPIC`), "
                "ROS_DOMAIN_ID, or remove the input from the recorder config"
            )

    def sample(self, t: float) -> tuple[dict[str, Any], Any] | StaleInputs:
        """The step for tick time ``t``, or the reason it is refused (which inputs are too old)."""
        return self.inputs.sample(t)


class RecorderServices(Node):
    """The episode-control services (``~/start``, ``~/save``, ...), forwarded to the record loop's handler."""

    def __init__(self, *, context: Any = None, node_name: str = NODE_NAME) -> None:
        super().__init__(node_name, context=context)
        self.command_handler: Callable[[str, Any], tuple[bool, str]] | None = None
        for name in ("start", "save", "discard", "quit"):
            self.create_service(Trigger, f"~/{name}", self._trigger(name))
        for name in ("set_expert", "set_success"):
            self.create_service(SetBool, f"~/{name}", self._set_bool(name))

    def _call(self, name: str, value: Any = None) -> tuple[bool, str]:
        if self.command_handler is None:
            return False, "the record loop is not running yet"
        return self.command_handler(name, value)

    def _trigger(self, name: str) -> Callable[[Any, Any], Any]:
        def callback(request: Any, response: Any) -> Any:
            response.success, response.message = self._call(name)
            return response

        return callback

    def _set_bool(self, name: str) -> Callable[[Any, Any], Any]:
        def callback(request: Any, response: Any) -> Any:
            response.success, response.message = self._call(name, bool(request.data))
            return response

        return callback


class RosBackend(RecordBackend):
    """The record loop's back end on a ROS 2 arm: the inputs node and the services node, each on its own spin
    thread. The operator resets the scene by hand and decides success at save time, so the base class's
    no-op ``new_scene``, ``replay_scene``, ``idle`` and ``detected_success`` (None) are what a real arm needs."""

    def __init__(self, cfg: RecorderConfig, context: Any = None) -> None:
        self.cfg = cfg
        self.control_rate_hz = cfg.control_rate_hz
        self.max_steps: int | None = cfg.max_episode_steps or None
        self.node = RecorderNode(cfg, context=context)
        self.services = RecorderServices(context=context)
        self._spinners = [SpinThread(self.node, context=context), SpinThread(self.services, context=context)]
        self._t_start = 0.0
        self._next_tick: float | None = None  # use_sim_time: the sim time the next step is built for
        self._refused_by_topic: dict[str, int] = {}
        self._last_refusal = ""

    def set_command_handler(self, handler: Callable[[str, Any], tuple[bool, str]]) -> None:
        self.services.command_handler = handler

    def wait_for_topics(self) -> None:
        self.node.wait_for_topics(self.cfg.start_timeout_s)

    def schema(self) -> StoreSchema:
        return store_schema(self.cfg)

    def _tick_time(self) -> float:
        """When this step is built for: now - delay, or, on sim time, one period after the last step.

        On a simulated arm slower than real time the loop's wall-clock pacing would build several
        steps from one sim instant; waiting for /clock keeps one step per control period of sim time.
        """
        cfg = self.cfg
        if not cfg.use_sim_time:
            return self.node.now_s() - cfg.alignment_delay_s
        if self._next_tick is None:
            self._next_tick = self.node.now_s() - cfg.alignment_delay_s
        tick = self._next_tick
        deadline = time.monotonic() + cfg.start_timeout_s
        while self.node.now_s() - cfg.alignment_delay_s < tick and time.monotonic() < deadline:
            time.sleep(0.002)  # /clock has not reached the tick yet (a stopped clock: the step is refused stale)
        self._next_tick = tick + cfg.period_s
        return tick

    def begin_episode(self) -> None:
        self._t_start = self.node.now_s()
        self._next_tick = None
        self._refused_by_topic = {}
        self._last_refusal = ""

    def step(self) -> Step | Refused:
        result = self.node.sample(self._tick_time())
        if isinstance(result, StaleInputs):
            for topic in result.topics:
                self._refused_by_topic[topic] = self._refused_by_topic.get(topic, 0) + 1
            self._last_refusal = result.message
            return Refused(result.message)
        return Step(obs=result[0], action=result[1])

    def episode_attrs(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            **recorder_attrs(cfg),
            "recorder": "ros2",
            "ros_time_start": self._t_start,
            "ros_time_end": self.node.now_s(),
            "refused_by_topic": dict(self._refused_by_topic),
            "last_refusal": self._last_refusal,
        }

    def close(self) -> None:
        for spinner in self._spinners:
            spinner.close()
        self.services.destroy_node()
        self.node.destroy_node()
