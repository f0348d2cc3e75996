"""Does a big camera trip the policy node's watchdog? Trips and receive ages per frame size (run by hand).

A publisher *process* (an independent client, as a camera driver would be) sends rgb8 frames at
``--fps`` stamped at publication, and joint states at 100 Hz; its own publish intervals are
recorded, so a late publisher can be told apart from a late subscriber. This process runs the
policy node exactly as ``policy_node.main`` does (one SingleThreadedExecutor thread plus the
inference thread, scripted 84x84 policy, dry run, 10 Hz, image_timeout_s 0.25 s) and records:

- watchdog trips: holds with reason ``watchdog`` (the bench calls ``~/start`` again after each);
- receive age of every frame: arrival in the node's image callback minus its header stamp;
- frames received / frames published, and the longest gap between received frames.

    PYTHONPATH=.:sim:hardware .venv/bin/python bench/ros_camera_watchdog.py --seconds 45
    PYTHONPATH=.:sim:hardware .venv/bin/python bench/ros_camera_watchdog.py --sizes 640x480 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "ros"))  # the scripted test policy and test picture
TOPIC = "/camera/image_raw"


def publish(width: int, height: int, fps: float, seconds: float, reliable: bool) -> None:
    """The publisher process: frames at ``fps`` and joint states at 100 Hz, then its timing as JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from ros_rig import Q0, test_image
    from sensor_msgs.msg import Image, JointState

    from robot_offrl_ros.image_codec import to_image_msg

    rclpy.init()
    node = rclpy.create_node("bench_camera")
    # Camera drivers differ: image_transport publishers are reliable (depth 10), others use sensor-data QoS.
    cam_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if reliable else qos_profile_sensor_data
    cam = node.create_publisher(Image, TOPIC, cam_qos)
    joints = node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
    frame = to_image_msg(test_image(height, width))  # built once: a driver does not rebuild it in Python
    sent: list[float] = []

    def tick_camera() -> None:
        frame.header.stamp = node.get_clock().now().to_msg()
        cam.publish(frame)
        sent.append(time.time())

    def tick_joints() -> None:
        msg = JointState()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.name = [f"panda_joint{i}" for i in range(1, 8)]
        msg.position = [float(v) for v in Q0]
        joints.publish(msg)

    node.create_timer(1.0 / fps, tick_camera)
    node.create_timer(0.01, tick_joints)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    gaps = np.diff(sent) * 1000 if len(sent) > 1 else np.zeros(1)
    print(json.dumps({"published": len(sent), "pub_gap_p50_ms": float(np.percentile(gaps, 50)),
                      "pub_gap_max_ms": float(gaps.max())}), flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


def measure(width: int, height: int, fps: float, seconds: float, timeout_s: float, publisher_qos: str,
            reliability: str) -> dict[str, Any]:
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from ros_policy_double import ScriptedPolicy
    from std_srvs.srv import Trigger

    from robot_offrl_ros.policy_node import PolicyNode
    from robot_offrl_ros.spinning import SpinThread

    warmup = 3.0
    child = subprocess.Popen([sys.executable, __file__, "--publisher", f"{width}x{height}", "--fps", str(fps),
                              "--seconds", str(seconds + warmup + 2.0), "--publisher-qos", publisher_qos],
                             stdout=subprocess.PIPE, text=True)
    ctx = Context()
    rclpy.init(context=ctx)
    params = {"control_rate_hz": 10.0, "image_timeout_s": timeout_s, "joint_state_timeout_s": 0.25,
              "enable_control": False, "camera_reliability": reliability}
    node = PolicyNode(policy_factory=lambda cfg: ScriptedPolicy(), context=ctx,
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ages: list[float] = []
    arrivals: list[float] = []
    trips: list[str] = []
    recording = threading.Event()
    image_callback = node._image_callback

    def timed_image_callback(topic: str) -> Any:
        inner = image_callback(topic)

        def callback(msg: Any) -> None:
            now = time.time()
            if recording.is_set():
                ages.append(now - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))
                arrivals.append(now)
            inner(msg)

        return callback

    hold = node._hold

    def counting_hold(reason: str, message: str) -> None:
        if reason == "watchdog" and recording.is_set():
            since = (time.time() - arrivals[-1]) * 1000 if arrivals else float("nan")
            trips.append(f"{message} [last frame arrived {since:.0f} ms before the trip]")
        hold(reason, message)

    node._image_callback = timed_image_callback  # type: ignore[method-assign]
    node._hold = counting_hold  # type: ignore[method-assign]
    spinner = SpinThread(node, context=ctx)
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise SystemExit(f"configure failed: {node._reason}")
        deadline = time.monotonic() + 20.0
        while node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            if time.monotonic() > deadline:
                raise SystemExit(f"activate failed: {node._reason}")
            time.sleep(0.1)
        time.sleep(warmup)
        recording.set()
        cpu0 = time.process_time()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if node.state == "held":
                node._srv_start(Trigger.Request(), Trigger.Response())  # resume once fresh again
            time.sleep(0.01)
        recording.clear()
        cpu = (time.process_time() - cpu0) / seconds
        dds_lost = sum(node._frames_lost.values())  # what the node's diagnostics report as frames_lost
    finally:
        spinner.close()
        node.safe_stop("bench end")
        node.destroy_node()
        ctx.try_shutdown()
        out, _ = child.communicate(timeout=60)
    pub = json.loads(out.strip().splitlines()[-1])
    age_ms = np.array(ages) * 1000 if ages else np.zeros(1)
    gaps = np.diff(arrivals) * 1000 if len(arrivals) > 1 else np.zeros(1)
    return {"size": f"{width}x{height}", "trips": len(trips), "received": len(ages),
            "expected": int(round(seconds * fps)), "age_p50": float(np.percentile(age_ms, 50)),
            "age_p99": float(np.percentile(age_ms, 99)), "age_max": float(age_ms.max()),
            "gap_max": float(gaps.max()), "cpu": cpu, "dds_lost": dds_lost, **pub, "trips_detail": trips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="640x480,320x240", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=45.0, help="measurement window per size")
    parser.add_argument("--image-timeout", type=float, default=0.25, help="the node's image_timeout_s")
    parser.add_argument("--publisher-qos", choices=("reliable", "sensor"), default="reliable",
                        help="the camera publisher's QoS: reliable depth 10 (image_transport) or sensor data")
    parser.add_argument("--camera-reliability", choices=("reliable", "best_effort"), default="reliable",
                        help="the node's camera_reliability parameter")
    parser.add_argument("--publisher", default="", help=argparse.SUPPRESS)  # internal: run as the publisher
    args = parser.parse_args()
    if args.publisher:
        width, height = (int(v) for v in args.publisher.split("x"))
        publish(width, height, args.fps, args.seconds, args.publisher_qos == "reliable")
        return
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(random.randint(1, 100))
    rows = []
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        rows.append(measure(width, height, args.fps, args.seconds, args.image_timeout, args.publisher_qos,
                            args.camera_reliability))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{args.fps:g} Hz rgb8, {args.seconds:g} s per size, image_timeout_s {args.image_timeout:g}, publisher "
          f"{args.publisher_qos}, camera_reliability {args.camera_reliability}, load average {os.getloadavg()[0]:.1f}")
    print("| frame | watchdog trips | frames received / sent in window | receive age p50 | p99 | max | "
          "longest gap | publisher gap max | node CPU (core-s/s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['trips']} | {r['received']} / {r['expected']} | {r['age_p50']:.1f} ms | "
              f"{r['age_p99']:.1f} ms | {r['age_max']:.1f} ms | {r['gap_max']:.0f} ms | {r['pub_gap_max_ms']:.0f} ms | {r['cpu']:.2f} |")
    for r in rows:
        for trip in r["trips_detail"]:
            print(f"{r['size']} trip: {trip}")


if __name__ == "__main__":
    main()
