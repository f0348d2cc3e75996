"""``robot-offrl sim collect|build-dataset``, ``robot-offrl sweep`` and ``robot-offrl sweep-merge``.

Thin shells: the work lives in ``robot_offrl_sim`` and is imported inside each handler, so building
the parser (every ``robot-offrl`` call) never imports robosuite.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from robot_offrl.errors import ConfigError
from robot_offrl_cli.data_cmd import add_wait_option
from robot_offrl_cli.options import csv_list


def _cmd_collect(args: argparse.Namespace) -> int:
    from robot_offrl_sim.collect import collect

    idx = collect(
        args.task, args.kind, args.episodes, args.out, region=args.region,
        cameras=csv_list(args.cameras) if args.cameras else None, seed=args.seed, horizon=args.horizon,
        progress=not args.quiet, checkpoint=args.checkpoint,
    )
    print(f"appended {len(idx)} {args.kind} episode(s) to {args.out} (indices {idx[0]}..{idx[-1]})")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from robot_offrl_sim.recipes import build_dataset

    summary = build_dataset(args.recipe, args.out, seed=args.seed, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from robot_offrl_sim.perturbations import parse_perturbation
    from robot_offrl_sim.regions import parse_grid
    from robot_offrl_sim.sweep import SweepConfig, parse_shard, run_sweep

    if (args.policy is None) == (args.checkpoint is None):
        raise ConfigError("give exactly one of --policy scripted:<task> or --checkpoint RUN")
    policy = args.policy if args.policy is not None else f"checkpoint:{args.checkpoint}"
    if args.address is not None and args.backend != "ray":
        raise ConfigError("--address names a Ray cluster: use it with --backend ray")
    config = SweepConfig(
        task=args.task, policy=policy, region=args.region, grid=parse_grid(args.grid),
        episodes_per_cell=args.episodes_per_cell,
        perturbations=tuple(parse_perturbation(p) for p in args.perturb or []),
        seed=args.seed, horizon=args.horizon, workers=args.workers, shard=parse_shard(args.shard),
        video=args.video, record=args.record, policy_kwargs=_acting_options(args),
        backend=args.backend, backend_options={} if args.address is None else {"address": args.address},
    )
    runner = None
    if args.backend == "ros":  # the same grid and seeds, each episode through policy_node + the sim arm
        from robot_offrl_ros.sim_sweep_backend import ros_sweep

        config, runner = ros_sweep(config, args.real_time_factor, log_dir=Path(args.out) / "ros_logs")
    elif args.real_time_factor is not None:
        raise ConfigError("--real-time-factor applies to --backend ros only")
    summary = run_sweep(config, args.out, progress=not args.quiet, runner=runner)
    t, n = summary["totals"], summary["narrow"]
    narrow = "n/a" if n["rate"] is None else f"{n['rate']:.1%}"
    print(f"success {t['successes']}/{t['episodes']} ({t['rate']:.1%}); inside narrow: {narrow}; "
          f"wrote {args.out}/sweep.json, heatmap.png, report.md")
    return 0


def _acting_options(args: argparse.Namespace) -> dict[str, Any]:
    """Test-time options of a checkpoint (PolicyRuntime's keywords); unset ones keep the checkpoint's.

    They let one trained critic be evaluated at several K or replanning intervals without retraining.
    A scripted expert has no such knobs, so giving one with --policy is an error, not a silent no-op.
    """
    flags = {
        "--candidates": ("num_candidates", args.candidates), "--n-action-steps": ("n_action_steps", args.n_action_steps),
        "--inference-steps": ("num_inference_steps", args.inference_steps),
        "--selection": ("selection", args.selection), "--temperature": ("temperature", args.temperature),
        "--amp": ("amp", args.amp), "--conv1d": ("conv1d", args.conv1d),
        "--prune-after": ("prune_after", args.prune_after), "--prune-keep": ("prune_keep", args.prune_keep),
    }
    given = {flag: kv for flag, kv in flags.items() if kv[1] is not None}
    if given and args.checkpoint is None:
        raise ConfigError(f"{', '.join(given)}: acting options apply to --checkpoint policies only")
    from robot_offrl.runtime.policy import check_acting_options

    return check_acting_options(dict(given.values()), shown={key: flag for flag, (key, _) in flags.items()})


def _cmd_merge(args: argparse.Namespace) -> int:
    from robot_offrl_sim.sweep import merge_sweeps

    summary = merge_sweeps(args.dirs, args.out)
    t = summary["totals"]
    print(f"merged {len(args.dirs)} shard(s): {t['successes']}/{t['episodes']} successes; wrote {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    sim = subparsers.add_parser(
        "sim", help="generate sim episodes (robosuite) into episode stores",
        description="Generate simulated episodes with scripted experts and non-expert generators.",
        epilog="Example: robot-offrl sim collect --task lift --kind expert --episodes 10 --out data/lift.zarr",
        formatter_class=fmt,
    )
    sim.set_defaults(func=lambda a: sim.print_help() or 0)
    sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")

    col = sub.add_parser(
        "collect", help="append generated episodes to a store (created if missing)",
        epilog="Examples:\n"
        "  robot-offrl sim collect --task lift --kind expert --episodes 50 --region narrow --out data/lift.zarr\n"
        "  robot-offrl sim collect --task lift --kind play --episodes 100 --region wide --cameras agentview "
        "--seed 1 --out data/lift.zarr\n"
        "Use a different --seed for each call that appends the same kind to one store.",
        formatter_class=fmt,
    )
    col.add_argument("--task", required=True, help="lift, can, square (configs/task/<name>.yaml)")
    col.add_argument("--kind", required=True, help="expert, partial, reset_play, failed_smooth, policy_rollout, ... (docs/sim.md; collect checks it)")
    col.add_argument("--checkpoint", default=None, help="policy_rollout only: the run whose policy runs")
    col.add_argument("--episodes", type=int, required=True)
    col.add_argument("--region", default=None, help="narrow or wide (default: narrow for expert, else wide)")
    col.add_argument("--cameras", default=None, help="comma list, e.g. agentview,robot0_eye_in_hand")
    col.add_argument("--seed", type=int, default=0)
    col.add_argument("--horizon", type=int, default=None, help="max steps per episode (default: task's)")
    col.add_argument("--out", required=True, help="store path or URL (appended to)")
    col.add_argument("--quiet", action="store_true")
    add_wait_option(col, _cmd_collect)

    build = sub.add_parser(
        "build-dataset", help="generate a whole dataset from a recipe (datasets/*.yaml) into a new store",
        epilog="Example: robot-offrl sim build-dataset datasets/lift_rise.yaml --out data/lift_rise.zarr",
    )
    build.add_argument("recipe")
    build.add_argument("--out", required=True)
    build.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    build.add_argument("--quiet", action="store_true")
    build.set_defaults(func=_cmd_build)

    sw = subparsers.add_parser(
        "sweep", help="success over a grid of initial conditions (heatmap, report, videos)",
        epilog="Examples:\n"
        "  robot-offrl sweep --policy scripted:lift --task lift --region wide --grid 7x7 --out runs/sweep_lift\n"
        "  robot-offrl sweep --checkpoint runs/rise_lift --task lift --grid 7x7 --episodes-per-cell 3 "
        "--perturb object:0.05,0@40 --workers 2 --video 4 --shard 0/2 --out runs/sweep_s0\n"
        "  robot-offrl sweep --checkpoint runs/rise_lift --task lift --grid 9x9 --backend ray --address auto "
        "--out runs/sweep_ray",
        formatter_class=fmt,
    )
    sw.add_argument("--policy", default=None, help="scripted:<task> (the scripted expert)")
    sw.add_argument("--checkpoint", default=None, help="training run or checkpoint folder (PolicyRuntime)")
    sw.add_argument("--task", required=True)
    sw.add_argument("--region", default="wide")
    sw.add_argument("--grid", default="7x7", help="columns x rows over the region, e.g. 7x7")
    sw.add_argument("--episodes-per-cell", type=int, default=1)
    sw.add_argument("--perturb", action="append", default=None,
                    help="object:dx,dy[,dyaw]@step | arm:dx,dy,dz@step | arm-nudge:dx,dy,dz@step (repeatable)")
    sw.add_argument("--workers", type=int, default=1, help="worker processes (spawned; --backend local)")
    sw.add_argument("--backend", default="local",
                    help="where episodes run: local (this machine, --workers processes), ray (one Ray task per "
                    "episode) or ros (policy_node + the sim arm over ROS 2, docs/deploy.md); same sweep.json")
    sw.add_argument("--address", default=None,
                    help="--backend ray: the cluster (ray://HOST:10001, HOST:6379 or auto); default: a local Ray")
    sw.add_argument("--video", type=int, default=0, help="record MP4s of the first N episodes")
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--horizon", type=int, default=None)
    sw.add_argument("--shard", default="0/1", help="run cells i, i+n, ... of the grid (i/n)")
    sw.add_argument("--record", default=None, help="also append every rollout to this store (policy_rollout)")
    sw.add_argument("--candidates", type=int, default=None,
                    help="K action chunks scored by the critic per plan (default: the checkpoint's)")
    sw.add_argument("--inference-steps", type=int, default=None,
                    help="denoising steps per sampled chunk (default: the checkpoint's: 6, or 10 for runs "
                         "trained before 2026-12-02)")
    sw.add_argument("--n-action-steps", type=int, default=None,
                    help="actions executed per plan before replanning (default: the checkpoint's)")
    sw.add_argument("--selection", default=None,  # checked against algos/selection.py's list, not a copy here
                    help="how the critic picks among candidates: argmax or softmax (default: the checkpoint's)")
    sw.add_argument("--temperature", type=float, default=None, help="softmax selection temperature")
    sw.add_argument("--prune-after", type=int, default=None,
                    help="rank the K candidates by Q after this many denoising steps and finish only "
                         "--prune-keep of them; 0 turns pruning off (default: the checkpoint's)")
    sw.add_argument("--prune-keep", type=int, default=None,
                    help="candidates that survive pruning (default: the checkpoint's)")
    sw.add_argument("--amp", default=None,  # checked against the runtime's list (runtime/policy.py)
                    help="acting precision: auto, bf16 or off (default: the runtime's, auto)")
    sw.add_argument("--conv1d", default=None,  # checked against models/conv1d.py's list
                    help="U-Net convolutions when acting in fp32: auto (one GEMM per short-sequence layer "
                         "where measured faster) or native (nn.Conv1d's kernels) (default: auto)")
    sw.add_argument("--real-time-factor", type=float, default=None,
                    help="--backend ros: sim seconds per wall second (default 0.5)")
    sw.add_argument("--out", required=True)
    sw.add_argument("--quiet", action="store_true")
    add_wait_option(sw, _cmd_sweep)  # --record: shards appending to one store take turns

    merge = subparsers.add_parser(
        "sweep-merge", help="merge sweep shards into one report",
        epilog="Example: robot-offrl sweep-merge runs/sweep_s0 runs/sweep_s1 --out runs/sweep",
    )
    merge.add_argument("dirs", nargs="+")
    merge.add_argument("--out", required=True)
    merge.set_defaults(func=_cmd_merge)
