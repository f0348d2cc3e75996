"""CPU cost and delivery delay of sensor traffic under rclpy's two Python executors (run by hand).

Why this exists: the policy node and the recorder first spun on ``MultiThreadedExecutor``; on a
2-core machine their sensor callbacks then cost about a core and starved every other thread. This
measures both executors in one run on the same traffic: a publisher node (its own single-threaded
spin thread, as another process would be) sends joint states, a 96x128 rgb8 camera and a leader
arm's joint states at the given rates; a subscriber node buffers them like the recorder does.

    PYTHONPATH=.:sim:hardware .venv/bin/python bench/bench_ros_executor.py --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time

import numpy as np


def run_case(executor_kind: str, seconds: float, rates: dict[str, float]) -> dict[str, float]:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState

    from robot_offrl_ros.image_codec import to_image_msg
    from robot_offrl_ros.spinning import SpinThread

    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(101, 200))
    pub_node = rclpy.create_node("bench_publisher", context=ctx)
    sub_node = rclpy.create_node("bench_subscriber", context=ctx)
    kinds = {"joints": JointState, "camera": Image, "leader": JointState}
    delays: dict[str, list[float]] = {name: [] for name in rates}

    def on_msg(name: str):  # noqa: ANN202
        def callback(msg: object) -> None:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9  # type: ignore[attr-defined]
            delays[name].append(sub_node.get_clock().now().nanoseconds * 1e-9 - stamp)

        return callback

    for name in rates:
        sub_node.create_subscription(kinds[name], f"/bench/{name}", on_msg(name), qos_profile_sensor_data)
    pubs = {name: pub_node.create_publisher(kinds[name], f"/bench/{name}", qos_profile_sensor_data) for name in rates}
    image = np.zeros((96, 128, 3), dtype=np.uint8)
    stop = threading.Event()

    def publish(name: str, hz: float) -> None:
        while not stop.is_set():
            stamp = pub_node.get_clock().now().to_msg()
            if name == "camera":
                msg = to_image_msg(image, "rgb8", stamp=stamp)
            else:
                msg = JointState(name=[f"j{i}" for i in range(8)], position=[0.0] * 8)
                msg.header.stamp = stamp
            pubs[name].publish(msg)
            time.sleep(1.0 / hz)

    pub_spin = SpinThread(pub_node, context=ctx)
    if executor_kind == "multi":
        executor = MultiThreadedExecutor(num_threads=3, context=ctx)
        executor.add_node(sub_node)

        def spin() -> None:
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.05)

        sub_thread = threading.Thread(target=spin, daemon=True)
        sub_thread.start()
    else:
        sub_spin = SpinThread(sub_node, context=ctx)
    publishers = [threading.Thread(target=publish, args=(n, hz), daemon=True) for n, hz in rates.items()]
    for thread in publishers:
        thread.start()
    time.sleep(1.0)  # discovery and warm-up
    for values in delays.values():
        values.clear()
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    received = {n: len(v) for n, v in delays.items()}
    all_delays = np.concatenate([np.asarray(v) for v in delays.values()]) * 1000.0
    stop.set()
    for thread in publishers:
        thread.join()
    if executor_kind == "multi":
        sub_thread.join()
        executor.shutdown()
    else:
        sub_spin.close()
    pub_spin.close()
    pub_node.destroy_node()
    sub_node.destroy_node()
    ctx.try_shutdown()
    expected = sum(rates.values()) * wall
    return {
        "cpu_s_per_s": round(cpu / wall, 3),
        "received_fraction": round(sum(received.values()) / expected, 3),
        "delay_ms_p50": round(float(np.percentile(all_delays, 50)), 2),
        "delay_ms_p99": round(float(np.percentile(all_delays, 99)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--joints-hz", type=float, default=50.0)
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--leader-hz", type=float, default=30.0)
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rates = {"joints": args.joints_hz, "camera": args.camera_hz, "leader": args.leader_hz}
    print(f"rates {rates}, {args.seconds:.0f} s per case, {os.cpu_count()} cores")
    for kind in ("multi", "single"):
        label = "MultiThreadedExecutor(3)" if kind == "multi" else "SpinThread (SingleThreadedExecutor)"
        print(label, json.dumps(run_case(kind, args.seconds, rates)))


if __name__ == "__main__":
    main()
