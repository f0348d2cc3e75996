"""Observation-to-command latency and command continuity through the ROS 2 policy node (run by hand).

A helper node publishes joint states (50 Hz) and camera frames (20 Hz, 96x128 rgb8) stamped at
publication; the node runs at the control rate (default 10 Hz) and sends JointTrajectory chunks.
Latency per command = arrival time of the JointTrajectory at the helper - the observation stamp
the chunk was planned from (the header stamp of the ~/action_chunk published in the same tick,
i.e. the oldest input stamp). Both clocks are the same host clock.

Continuity: each trajectory replaces the previous one on arrival, so the actions the controller
executes are, per message, its points due before the next message arrived. From those:
executed actions/s, the gaps between consecutive executed actions (a gap above one control period
means the arm reached the end of a chunk and rested), and the jump where a new chunk takes over
(its first point against the previous message's trajectory at the same instant). The rig's arm
does not move; with a checkpoint the node's velocity cap, measured from that static arm, moves first
points due within milliseconds, so the jump column then mostly shows the cap.

``--plan-delay-ms`` gives the scripted policy a plan time (a sleep, so it costs no CPU), and
``--plan-ahead both`` runs each delay with the node's ``plan_ahead`` off (before) and auto (after)
in one run and prints the ratios.

    PYTHONPATH=.:sim:hardware .venv/bin/python bench/bench_ros_latency.py --seconds 30
    PYTHONPATH=.:sim:hardware .venv/bin/python bench/bench_ros_latency.py --checkpoint runs/lift/ --num-candidates 32
    PYTHONPATH=.:sim:hardware .venv/bin/python bench/bench_ros_latency.py --rate 20 --n-action-steps 8 \\
        --plan-delay-ms 175 400 --plan-ahead both --seconds 25
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "ros"))  # the in-process rig and the scripted test policy
sys.path.insert(0, str(ROOT / "hardware"))

from robot_offrl_ros.command_stats import executed_stream, obs_to_command_latencies  # noqa: E402


def run_case(args: argparse.Namespace, delay_ms: float | None, plan_ahead: str) -> dict[str, float]:
    import rclpy
    from rclpy.context import Context
    from ros_policy_double import ScriptedPolicy
    from ros_rig import TRAJECTORY_TOPIC, Rig

    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 100))
    params: dict[str, Any] = {"enable_control": True, "control_rate_hz": args.rate, "num_candidates": args.num_candidates,
                              "num_inference_steps": args.num_inference_steps, "image_timeout_s": 0.5,
                              "joint_state_timeout_s": 0.5, "plan_ahead": plan_ahead}
    if args.plan_ahead_margin is not None:
        params["plan_ahead_margin_s"] = args.plan_ahead_margin
    if args.n_action_steps:
        params["n_action_steps"] = args.n_action_steps
    if args.checkpoint:
        params["checkpoint"] = args.checkpoint
        policy = None
    else:
        # The rig's arm does not move, so the node's velocity cap (relative to the measured joints) would
        # move a first point due within milliseconds; a high cap keeps the positions the policy's own.
        params["max_joint_velocity"] = [1000.0] * 7
        policy = ScriptedPolicy(offset=0.01, n_action_steps=args.n_action_steps or 8, control_rate_hz=args.rate)
        if delay_ms:
            policy.mode, policy.slow_s = "slow", delay_ms / 1000.0
    rig = Rig(ctx, policy, params)
    try:
        if rig.configure().name != "SUCCESS" or not rig.activate(10.0):
            raise SystemExit(f"node did not start: {rig.node._reason}")
        rig.wait_for(lambda: False, 2.0)  # settle: the latency estimate fills
        rig.clear()
        plans0 = rig.node._stats.plans
        dropped0 = rig.node._stats.dropped_actions
        late0 = rig.node._stats.late_chunks
        time.sleep(args.seconds)
        with rig._lock:
            trajs = list(rig.received[TRAJECTORY_TOPIC])
            chunks = list(rig.received["/policy_node/action_chunk"])
        plans = rig.node._stats.plans - plans0
        dropped = rig.node._stats.dropped_actions - dropped0
        late = rig.node._stats.late_chunks - late0
        lat_inf = np.asarray(rig.node._stats.latencies_s) * 1000
    finally:
        rig.close()
        ctx.try_shutdown()

    latencies = obs_to_command_latencies(trajs, chunks)
    lat_ms = (latencies if latencies.size else np.array([np.nan])) * 1000  # nan: nothing was sent (every chunk late)
    sends = np.array([t for t, _ in trajs])
    intervals = np.diff(sends) * 1000 if sends.size > 1 else np.array([np.nan])
    executed, jumps = executed_stream(trajs)
    gaps = np.diff(executed) * 1000 if executed.size > 1 else np.array([np.nan])
    period_ms = 1000.0 / args.rate
    return {
        "messages_per_s": len(trajs) / args.seconds, "executed_per_s": executed.size / args.seconds,
        "gap_max_ms": float(gaps.max()), "gap_p99_ms": float(np.percentile(gaps, 99)),
        "gaps_over_1.5_periods": int(np.sum(gaps > 1.5 * period_ms)),
        "plans_per_s": plans / args.seconds, "dropped_per_s": dropped / args.seconds,
        "late_chunks_per_s": late / args.seconds,
        "latency_p50_ms": float(np.percentile(lat_ms, 50)), "latency_p99_ms": float(np.percentile(lat_ms, 99)),
        "interval_p50_ms": float(np.percentile(intervals, 50)), "interval_p99_ms": float(np.percentile(intervals, 99)),
        "interval_max_ms": float(intervals.max()), "inference_p50_ms": float(np.percentile(lat_inf, 50)),
        "splice_jump_max_rad": max(jumps) if jumps else 0.0, "splices": len(jumps),
    }


METRICS = [("messages_per_s", "trajectory messages/s"), ("executed_per_s", "executed actions/s"),
           ("gap_max_ms", "gap between executed actions, max (ms)"), ("gap_p99_ms", "gap p99 (ms)"),
           ("gaps_over_1.5_periods", "gaps > 1.5 periods"), ("plans_per_s", "plans/s"),
           ("dropped_per_s", "dropped actions/s"), ("late_chunks_per_s", "chunks entirely late/s"),
           ("latency_p50_ms", "obs->command p50 (ms)"),
           ("latency_p99_ms", "obs->command p99 (ms)"), ("splice_jump_max_rad", "jump at hand-over, max (rad)"),
           ("inference_p50_ms", "inference p50 (ms)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window after activation")
    parser.add_argument("--rate", type=float, default=10.0, help="control rate, Hz")
    parser.add_argument("--checkpoint", default="", help="a trained run/checkpoint instead of the scripted policy")
    parser.add_argument("--num-candidates", type=int, default=32)
    parser.add_argument("--num-inference-steps", type=int, default=10)
    parser.add_argument("--n-action-steps", type=int, default=0, help="actions per chunk (0: the policy's)")
    parser.add_argument("--plan-delay-ms", type=float, nargs="*", default=[],
                        help="scripted policy: plan time(s) to measure, one case each")
    parser.add_argument("--plan-ahead", choices=("off", "auto", "both"), default="auto",
                        help="the node's plan_ahead; both: off (before) and auto (after) per case, with ratios")
    parser.add_argument("--plan-ahead-margin", type=float, default=None,
                        help="the node's plan_ahead_margin_s (default: the node's)")
    args = parser.parse_args()

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    modes = ["off", "auto"] if args.plan_ahead == "both" else [args.plan_ahead]
    delays: list[float | None] = list(args.plan_delay_ms) or [None]
    policy = args.checkpoint or "scripted test policy"
    print(f"policy: {policy}; control rate {args.rate:g} Hz; n_action_steps {args.n_action_steps or 'policy'}; "
          f"window {args.seconds:g} s per case; load average {os.getloadavg()[0]:.1f} at start")
    for delay in delays:
        results = {mode: run_case(args, delay, mode) for mode in modes}
        title = f"plan delay {delay:g} ms" if delay else "plan delay: the policy's own"
        print(f"\n{title}")
        print("| metric | " + " | ".join(f"plan_ahead {m}" for m in modes) + (" | after/before |" if len(modes) > 1 else " |"))
        print("|---|" + "---|" * (len(modes) + (len(modes) > 1)))
        for key, label in METRICS:
            values = [results[m][key] for m in modes]
            row = f"| {label} | " + " | ".join(f"{v:.4g}" for v in values)
            if len(modes) > 1:
                row += f" | {values[1] / values[0]:.2f}" if values[0] and np.isfinite(values[0]) else " | -"
            print(row + " |")


if __name__ == "__main__":
    main()
