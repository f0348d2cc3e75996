"""The same deployable checkpoint swept directly and through ROS 2, on the same grid and seeds (run by hand).

Direct: robot_offrl_sim.sweep runs each episode in robosuite in this process (PolicyRuntime.act per
control step). ROS: the same jobs through policy_node and the sim arm as separate processes over DDS
(robot_offrl_ros.sim_sweep_backend), on the sim arm's /clock at --real-time-factor. Prints success side by
side (per cell and overall, with a Fisher exact test of the difference), the ROS command stream
(trajectory messages and executed actions per sim second, obs->command latency in sim and wall time)
and the wall time of each, and writes OUT/bench.json.

Without --checkpoint it trains one: BC on datasets/lift_joint_small.yaml's store (built into OUT/data
when --data is not given), a CPU-sized network.

    PYTHONPATH=.:sim:hardware MUJOCO_GL=egl nice -n 10 .venv/bin/python bench/bench_ros_sweep.py \\
        --out runs/bench_ros_sweep --grid 2x2 --episodes-per-cell 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for sub in ("", "sim", "hardware"):
    sys.path.insert(0, str(ROOT / sub))
os.environ.setdefault("MUJOCO_GL", "egl")

TASK = "lift_joint"
TRAIN_OVERRIDES = [  # CPU-sized: the demo's small trainer with a smaller image encoder
    "algo=bc", "trainer=small", "trainer.lr=1.0e-3", "trainer.batch_size=32", "trainer.val_fraction=0",
    "trainer.progress=false", "trainer.log_every=50", "policy.hidden_dim=256", "policy.num_blocks=3",
    "encoder.feature_dim=32", "encoder.num_keypoints=16",
]


def train_checkpoint(out: Path, data: str | None, steps: int) -> Path:
    from robot_offrl.config import compose
    from robot_offrl.train.loop import train
    from robot_offrl_sim.recipes import build_dataset

    if data is None:
        data = str(out / "data" / "lift_joint_small.zarr")
        if not Path(data).exists():
            build_dataset(str(ROOT / "datasets" / "lift_joint_small.yaml"), data)
    run = out / "run"
    result = train(compose("train", [f"data={data}", f"out={run}", f"task={TASK}", f"trainer.steps={steps}",
                                     f"trainer.checkpoint_every={steps}", *TRAIN_OVERRIDES]))
    print(f"trained {run}: {result.step} steps, losses {result.losses}")
    return run


def fisher_p(a_succ: int, a_n: int, b_succ: int, b_n: int) -> float:
    """Two-sided Fisher exact p-value of two success counts (small samples: no normal approximation)."""
    from math import comb

    total_succ, n = a_succ + b_succ, a_n + b_n

    def prob(k: int) -> float:
        return comb(a_n, k) * comb(b_n, total_succ - k) / comb(n, total_succ)

    lo, hi = max(0, total_succ - b_n), min(a_n, total_succ)
    observed = prob(a_succ)
    return min(1.0, sum(prob(k) for k in range(lo, hi + 1) if prob(k) <= observed * (1 + 1e-9)))


def main() -> None:
    from robot_offrl_ros.sim_sweep_backend import ros_sweep
    from robot_offrl_sim.regions import parse_grid
    from robot_offrl_sim.sweep import SweepConfig, run_sweep

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoint", default=None, help="a lift_joint run; default: train one")
    parser.add_argument("--data", default=None, help="lift_joint store to train on (default: build lift_joint_small)")
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--grid", default="2x2")
    parser.add_argument("--region", default="narrow")
    parser.add_argument("--episodes-per-cell", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=None, help="default: the task's")
    parser.add_argument("--real-time-factor", type=float, default=0.5)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t0 = time.monotonic()
    ckpt = Path(args.checkpoint) if args.checkpoint else train_checkpoint(out, args.data, args.train_steps)
    train_s = time.monotonic() - t0
    base = SweepConfig(task=TASK, policy=f"checkpoint:{ckpt}", region=args.region, grid=parse_grid(args.grid),
                       episodes_per_cell=args.episodes_per_cell, seed=args.seed, horizon=args.horizon)
    t1 = time.monotonic()
    direct = run_sweep(base, out / "direct", progress=True)
    direct_s = time.monotonic() - t1
    config, runner = ros_sweep(base, args.real_time_factor, log_dir=out / "ros" / "ros_logs")
    t2 = time.monotonic()
    ros = run_sweep(config, out / "ros", progress=True, runner=runner)
    ros_s = time.monotonic() - t2
    ros_details = json.loads((out / "ros" / "timing.json").read_text())["backend_details"]

    d, r = direct["totals"], ros["totals"]
    p = fisher_p(d["successes"], d["episodes"], r["successes"], r["episodes"])
    print(f"\n{'cell':>4} {'x':>7} {'y':>7}  direct  ros")
    for cd, cr in zip(direct["cells"], ros["cells"], strict=True):
        assert (cd["cell"], [e["seed"] for e in cd["results"]]) == (cr["cell"], [e["seed"] for e in cr["results"]])
        print(f"{cd['cell']:>4} {cd['x']:>7.3f} {cd['y']:>7.3f}  {cd['successes']}/{cd['episodes']}     "
              f"{cr['successes']}/{cr['episodes']}")
    print(f"all: direct {d['successes']}/{d['episodes']}, ROS {r['successes']}/{r['episodes']} (Fisher p={p:.3f})")
    steps_d = [e["steps"] for c in direct["cells"] for e in c["results"]]
    steps_r = [e["steps"] for c in ros["cells"] for e in c["results"]]
    keys = ("messages_per_sim_s", "executed_per_sim_s", "latency_sim_ms_p50", "latency_sim_ms_p99",
            "latency_wall_ms_p50", "latency_wall_ms_p99")
    print("ROS: " + ", ".join(f"{k} {ros_details.get(k)}" for k in keys))
    print(f"wall: train {train_s:.0f} s, direct {direct_s:.0f} s, ROS {ros_s:.0f} s; load avg at start {load_start}, "
          f"end {os.getloadavg()}")
    report = {
        "checkpoint": str(ckpt), "grid": args.grid, "region": args.region, "episodes_per_cell": args.episodes_per_cell,
        "seed": args.seed, "horizon": args.horizon, "real_time_factor": args.real_time_factor,
        "direct": {**d, "steps": steps_d, "wall_s": round(direct_s, 1)},
        "ros": {**r, "steps": steps_r, "wall_s": round(ros_s, 1), **{k: ros_details.get(k) for k in keys}},
        "fisher_p": p, "train_wall_s": round(train_s, 1), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
