"""Does a faster sampler keep the policy's success? One checkpoint, the same sweep, each sampler in turn.

With several checkpoints (the same training in fp32 and in bf16, say) each one runs each setting. Every
run runs the same sweep (same seed, so the same initial states episode for episode); the
output is each setting's success with a 95% Wilson interval, the episodes it won and lost against the same
checkpoint's first setting and against the very first run (with an exact sign test), and its per-episode
outcomes. Quality is judged by success, not by loss.

    PYTHONPATH=.:sim .venv/bin/python bench/bench_solver_quality.py --checkpoint RUN --task lift_pose \\
        --grid 4x4 --episodes-per-cell 2 --settings ddim:10 dpmsolver:4 unipc:4 dpmsolver:3

Name every option a comparison turns on or off in each setting (``ddim:6:prune_after=0`` against
``ddim:6:prune_after=1``): unnamed ones are the checkpoint's. Each line's ``acted`` says what ran.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def outcomes(summary: dict) -> list[bool]:
    return [bool(e["success"]) for c in summary["cells"] for e in c["results"]]


def sign_test(won: int, lost: int) -> float:
    """Two-sided exact sign test on the episodes whose outcome changed (ties carry no information)."""
    n = won + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(won, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(got: list[bool], reference: list[bool]) -> dict[str, float]:
    """Episodes this run won and lost against the reference run on the same starts, and the sign test."""
    won = sum(g and not r for g, r in zip(got, reference, strict=True))
    lost = sum(r and not g for g, r in zip(got, reference, strict=True))
    return {"won": won, "lost": lost, "sign_test_p": round(sign_test(won, lost), 4)}


def main() -> None:
    from robot_offrl_sim.regions import parse_grid
    from robot_offrl_sim.sweep import SweepConfig, run_sweep

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, nargs="+",
                        help="one or more runs (e.g. trained in fp32 and in bf16); the first is the reference")
    parser.add_argument("--task", default="lift_pose")
    parser.add_argument("--region", default="wide")
    parser.add_argument("--grid", default="4x4")
    parser.add_argument("--episodes-per-cell", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", default=["ddim:10", "dpmsolver:4", "unipc:4"],
                        help="scheduler:steps[:key=value,...] acting options; the first is the reference")
    args = parser.parse_args()
    first_run: list[bool] | None = None  # the first checkpoint's first setting
    own_reference: dict[str, list[bool]] = {}  # each checkpoint's first setting
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(checkpoint, setting) for checkpoint in args.checkpoint for setting in args.settings]
        for i, (checkpoint, setting) in enumerate(runs):
            scheduler, steps, *rest = setting.split(":")
            acting: dict = {"scheduler": scheduler, "num_inference_steps": int(steps)}
            for kv in rest[0].split(",") if rest else []:
                key, value = kv.split("=")
                acting[key] = int(value) if value.isdigit() else value
            config = SweepConfig(task=args.task, policy=f"checkpoint:{checkpoint}", region=args.region,
                                 grid=parse_grid(args.grid), episodes_per_cell=args.episodes_per_cell,
                                 seed=args.seed, horizon=args.horizon, policy_kwargs=acting)
            t = time.perf_counter()
            summary = run_sweep(config, Path(tmp) / str(i))
            # How it really acted: a setting names only what it changes, the rest is the checkpoint's own
            # (a run trained with pruning on prunes under a bare "ddim:6" too).
            acted = json.loads((Path(tmp) / str(i) / "timing.json").read_text()).get("acting", {})
            got = outcomes(summary)
            first_run = got if first_run is None else first_run
            reference = own_reference.setdefault(checkpoint, got)
            lo, hi = wilson(sum(got), len(got))
            print(json.dumps({"checkpoint": checkpoint, "setting": setting, "successes": sum(got), "episodes": len(got),
                              "rate": round(sum(got) / len(got), 3), "wilson95": [round(lo, 3), round(hi, 3)],
                              "vs_first_setting": paired(got, reference), "vs_first_run": paired(got, first_run),
                              "outcomes": "".join("1" if g else "0" for g in got),
                              "acted": {k: acted.get(k) for k in ("scheduler", "num_inference_steps", "num_candidates",
                                                                  "prune_after", "prune_keep", "acting_dtype")},
                              "elapsed_s": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
