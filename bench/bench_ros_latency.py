"""Observation-to-command latency through the ROS 2 policy node (run by hand).

A helper node publishes joint states (50 Hz) and camera frames (20 Hz, 96x128 rgb8) stamped at
publication; the node runs at the control rate (default 10 Hz) and sends JointTrajectory chunks.
Latency per command = arrival time of the JointTrajectory at the helper - the observation stamp
the chunk was planned from (the header stamp of the ~/action_chunk published in the same tick,
i.e. the oldest input stamp). Both clocks are the same host clock.

    PYTHONPATH=.:sim:hardware .venv/bin/python bench/bench_ros_latency.py --seconds 30
    PYTHONPATH=.:sim:hardware .venv/bin/python bench/bench_ros_latency.py --checkpoint runs/lift/ --num-candidates 32
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "ros"))  # the in-process rig and the scripted test policy


def stamp_s(msg: object) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window after activation")
    parser.add_argument("--rate", type=float, default=10.0, help="control rate, Hz")
    parser.add_argument("--checkpoint", default="", help="a trained run/checkpoint instead of the scripted policy")
    parser.add_argument("--num-candidates", type=int, default=32)
    parser.add_argument("--num-inference-steps", type=int, default=10)
    args = parser.parse_args()

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    import rclpy
    from rclpy.context import Context
    from ros_policy_double import ScriptedPolicy
    from ros_rig import TRAJECTORY_TOPIC, Rig

    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 100))
    params = {"enable_control": True, "control_rate_hz": args.rate, "num_candidates": args.num_candidates,
              "num_inference_steps": args.num_inference_steps, "image_timeout_s": 0.5, "joint_state_timeout_s": 0.5}
    if args.checkpoint:
        params["checkpoint"] = args.checkpoint
    rig = Rig(ctx, None if args.checkpoint else ScriptedPolicy(), params)
    try:
        if rig.configure().name != "SUCCESS" or not rig.activate(10.0):
            raise SystemExit(f"node did not start: {rig.node._reason}")
        rig.wait_for(lambda: False, 1.0)  # settle
        rig.clear()
        time.sleep(args.seconds)
        with rig._lock:
            trajs = list(rig.received[TRAJECTORY_TOPIC])
            chunks = list(rig.received["/policy_node/action_chunk"])
        diag = {kv.key: kv.value for kv in rig.last_diagnostic().values}
    finally:
        rig.close()
        ctx.try_shutdown()

    chunk_recv = np.array([t for t, _ in chunks])
    chunk_obs = np.array([stamp_s(m) for _, m in chunks])
    latencies = []
    for t_recv, _ in trajs:
        k = int(np.argmin(np.abs(chunk_recv - t_recv)))  # published back to back in the same tick
        latencies.append(t_recv - chunk_obs[k])
    lat_ms = np.array(latencies) * 1000
    sends = np.array([t for t, _ in trajs])
    policy = args.checkpoint or "scripted test policy"
    print(f"policy: {policy}; control rate {args.rate:g} Hz; window {args.seconds:g} s; "
          f"{len(trajs)} commands ({len(trajs) / args.seconds:.2f}/s), {len(chunks)} chunks")
    print("| metric | p50 | p99 | mean | max |")
    print("|---|---|---|---|---|")
    print(f"| observation -> command (ms) | {np.percentile(lat_ms, 50):.1f} | {np.percentile(lat_ms, 99):.1f} | "
          f"{lat_ms.mean():.1f} | {lat_ms.max():.1f} |")
    intervals = np.diff(sends) * 1000
    print(f"| command interval (ms) | {np.percentile(intervals, 50):.1f} | {np.percentile(intervals, 99):.1f} | "
          f"{intervals.mean():.1f} | {intervals.max():.1f} |")
    print(f"node diagnostics: inference p50 {diag.get('inference_latency_ms_p50')} ms, "
          f"dropped actions {diag.get('dropped_actions')}, late chunks {diag.get('late_chunks')}")


if __name__ == "__main__":
    main()
