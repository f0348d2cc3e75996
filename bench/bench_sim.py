"""Simulation benchmark (run by hand): env steps/s, sweep episodes/min, scripted-expert success rates.

    PYTHONPATH=.:sim MUJOCO_GL=egl .venv/bin/python bench/bench_sim.py [--episodes 50] [--skip-rates]

Prints a Markdown table for docs/benchmarks.md. Expert success rates are measured here (50 seeded
episodes from the narrow region per task), not in the test suite, because they take minutes.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np

from robot_offrl_sim.experts import make_expert
from robot_offrl_sim.rollout import run_episode
from robot_offrl_sim.sweep import SweepConfig, run_sweep
from robot_offrl_sim.tasks import make_env


def steps_per_second(cameras: list[str], steps: int) -> float:
    env = make_env("lift", cameras=cameras)
    env.reset(0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, size=(steps, 7))
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


def sweep_rate(workers: int) -> float:
    cfg = SweepConfig(task="lift", policy="scripted:lift", region="wide", grid=(4, 4), horizon=100, workers=workers)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run_sweep(cfg, d)
        return 16 / (time.perf_counter() - t0) * 60.0


def expert_rate(task: str, episodes: int) -> tuple[int, float]:
    env = make_env(task)
    expert = make_expert(task)
    ok, steps = 0, []
    for seed in range(episodes):
        res = run_episode(env, expert, seed, region="narrow")
        ok += res.success
        if res.success_step is not None:
            steps.append(res.success_step)
    env.close()
    return ok, float(np.mean(steps)) if steps else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--skip-rates", action="store_true")
    args = ap.parse_args()
    rows = [("machine", f"{platform.processor() or platform.machine()}, CPU only")]
    for label, cams, n in [("low-dim", [], 400), ("1 camera (agentview 84x84)", ["agentview"], 60),
                           ("2 cameras (agentview + eye_in_hand 84x84)", ["agentview", "robot0_eye_in_hand"], 40)]:
        rows.append((f"Lift env steps/s, {label}", f"{steps_per_second(cams, n):.1f}"))
    for w in (1, 2):
        rows.append((f"sweep episodes/min, scripted Lift, 4x4 wide, horizon 100, {w} worker(s)",
                     f"{sweep_rate(w):.1f}"))
    if not args.skip_rates:
        for task in ("lift", "can", "square"):
            ok, mean_steps = expert_rate(task, args.episodes)
            rows.append((f"scripted expert success, {task}, narrow, {args.episodes} seeds",
                         f"{ok}/{args.episodes} ({ok / args.episodes:.0%}), mean {mean_steps:.0f} steps to success"))
    print("| measurement | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
