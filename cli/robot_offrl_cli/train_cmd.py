"""``robot-offrl train``: compose configs/train.yaml with Hydra overrides and run the trainer."""

from __future__ import annotations

import argparse
import json
import os

EPILOG = """\
examples:
  robot-offrl train task=lift algo=rise data=data/lift_rise.zarr out=runs/lift_rise
  robot-offrl train algo=bc data=data/lift_rise.zarr trainer=small trainer.steps=2000
  torchrun --nproc_per_node=4 -m robot_offrl_cli.main train algo=rise data=... out=...
algos: bc (Diffusion Policy, expert episodes), bc_all, idql, rise.  Show the composed config: --cfg
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a policy (bc, bc_all, idql, rise) on an episode store",
        description="Train with Hydra overrides (key=value) on top of configs/train.yaml. Resumes from "
        "OUT/checkpoints/latest when it exists (resume=false starts over); a damaged checkpoint or other "
        "training settings than the checkpoint's are refused (trainer.resume_fallback=true, "
        "trainer.resume_changes=[trainer.lr]: docs/training.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. algo=rise trainer.steps=1000")
    parser.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    parser.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from robot_offrl.config import compose, require, to_yaml

    cfg = compose("train", args.overrides)
    if args.cfg:
        print(to_yaml(cfg), end="")
        return 0
    require(cfg, "data")
    from robot_offrl.train.loop import train, write_summary

    result = train(cfg)
    if int(os.environ.get("RANK", 0)) != 0:
        return 0  # under torchrun, rank 0 reports for the run
    if result.checkpoint is not None and result.run_dir.exists():
        write_summary(result)
    print(json.dumps({"run": str(result.run_dir), "step": result.step, "checkpoint": str(result.checkpoint),
                      "losses": result.losses}))
    return 0
