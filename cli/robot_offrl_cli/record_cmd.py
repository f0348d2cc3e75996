"""``robot-offrl record``: teleoperate and record episodes, in robosuite or on a ROS 2 arm.

Thin: the record loop lives in ``robot_offrl_sim.teleop`` and the ROS back end in
``robot_offrl_ros.recorder``; both are imported inside the handler so building the parser never
imports robosuite or rclpy.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from robot_offrl.data import SOURCES
from robot_offrl.errors import ConfigError
from robot_offrl_cli.data_cmd import add_wait_option
from robot_offrl_cli.options import csv_list

EPILOG = """\
Examples:
  robot-offrl record --task lift --device keyboard --out data/lift_teleop.zarr
  robot-offrl record --task lift --device spacemouse --cameras agentview,robot0_eye_in_hand \\
      --region wide --seed 3 --no-expert --source play --out data/lift_play.zarr
  robot-offrl record --ros --config hardware/config/record.yaml --out data/arm_demos.zarr

Keys (sim: in any window; ROS: in this terminal, or the services ~/start ~/save ~/discard ~/quit):
  n start   k save prompt (1 expert, 2 success, Enter save)   x discard   z re-record
  g new scene   Q quit   c cancel   ? help.   Ctrl-C quits; every saved episode is kept.
See docs/recording.md."""


def _session_config(args: argparse.Namespace, operator: str = "") -> Any:
    from robot_offrl.record.session import SessionConfig

    expert = args.source == "teleop" if args.expert is None else args.expert
    return SessionConfig(
        expert=expert, source=args.source, success=args.success,
        operator=args.operator if args.operator is not None else (operator or os.environ.get("USER", "")),
    )


def _record_sim(args: argparse.Namespace) -> int:
    if not args.task:
        raise ConfigError("--task is required in sim (e.g. --task lift); use --ros for a real arm")
    from robot_offrl.data import EpisodeStore
    from robot_offrl.record.controls import ListenerKeys
    from robot_offrl.record.session import RecordSession, summarize_saved
    from robot_offrl_sim.tasks import make_env
    from robot_offrl_sim.teleop.devices import check_device_available, make_device
    from robot_offrl_sim.teleop.sim_backend import SimBackend, Viewer

    config = _session_config(args)
    check_device_available(args.device)  # no display / no hid: clear error before building the simulator
    cameras = csv_list(args.cameras) if args.cameras is not None else None
    env = make_env(args.task, cameras=cameras, camera_size=args.camera_size, horizon=args.horizon,
                   render_video=not args.no_view)
    backend = None
    try:
        device = make_device(args.device, env.env, args.pos_sensitivity, args.rot_sensitivity)
        viewer = None
        if not args.no_view:
            try:
                viewer = Viewer(env, args.view_camera)
            except Exception as err:  # OpenCV without GUI support: record blind rather than not at all
                print(f"record: no viewer window ({err}); the arm is not shown", file=sys.stderr)
        backend = SimBackend(env, device, region=args.region, seed=args.seed, source=args.source, viewer=viewer)
        with EpisodeStore.open(args.out, mode="a", schema=backend.schema()) as store:  # the write lock
            keys = ListenerKeys()
            try:
                saved = RecordSession(backend, store, config, keys=keys).run()
            finally:
                keys.close()
        print(f"record: {summarize_saved(store, saved)} ({args.out})")
    finally:
        if backend is not None:
            backend.close()
        else:
            env.close()
    return 0


def _record_ros(args: argparse.Namespace) -> int:
    if not args.config:
        raise ConfigError("--ros needs --config (start from hardware/config/record.yaml)")
    try:
        import rclpy

        from robot_offrl_ros.recorder import RosBackend, load_recorder_yaml
    except ImportError as err:
        raise ConfigError(f"--ros needs rclpy and the ROS 2 message packages ({err}); install the ros extra "
                          "or source your ROS 2 workspace") from err
    from robot_offrl.data import EpisodeStore
    from robot_offrl.record.controls import CommandQueue, open_terminal_keys
    from robot_offrl.record.session import RecordSession, service_handler, summarize_saved

    cfg = load_recorder_yaml(args.config)
    config = _session_config(args, operator=cfg.operator)
    rclpy.init()
    backend = None
    try:
        backend = RosBackend(cfg)
        print(f"record: waiting up to {cfg.start_timeout_s:.1f} s for every input topic ...", file=sys.stderr)
        backend.wait_for_topics()
        with EpisodeStore.open(args.out, mode="a", schema=backend.schema()) as store:  # the write lock
            commands = CommandQueue()
            backend.set_command_handler(service_handler(commands))
            with open_terminal_keys(sys.stdin.isatty()) as keys:
                saved = RecordSession(backend, store, config, keys=keys, commands=commands).run()
        print(f"record: {summarize_saved(store, saved)} ({args.out})")
    finally:
        if backend is not None:
            backend.close()
        rclpy.try_shutdown()
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    return _record_ros(args) if args.ros else _record_sim(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "record", help="teleoperate and record episodes (robosuite keyboard/SpaceMouse, or a ROS 2 arm)",
        description="Record demonstrations, play or failed attempts into an episode store. Each saved "
        "episode is committed atomically: a crash or Ctrl-C never loses a saved episode.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="episode store path or URL (created if missing, else appended)")
    p.add_argument("--ros", action="store_true", help="record from ROS 2 topics on a real arm (needs --config)")
    p.add_argument("--config", default=None, help="--ros: recorder YAML (hardware/config/record.yaml)")
    sim = p.add_argument_group("sim (robosuite)")
    sim.add_argument("--task", default=None, help="lift, can, square (configs/task/<name>.yaml)")
    sim.add_argument("--device", default="keyboard", choices=["keyboard", "spacemouse"])
    sim.add_argument("--cameras", default=None, help="comma list, e.g. agentview,robot0_eye_in_hand "
                     "(default: the task's; same keys as `sim collect`)")
    sim.add_argument("--camera-size", type=int, default=None, help="image size (default: the task's)")
    sim.add_argument("--region", default="narrow", help="initial-condition region: narrow or wide")
    sim.add_argument("--seed", type=int, default=0, help="scene k uses the same seed `sim collect` would")
    sim.add_argument("--horizon", type=int, default=None, help="max steps per episode (default: task's)")
    sim.add_argument("--no-view", action="store_true", help="no viewer window")
    sim.add_argument("--view-camera", default="agentview", help="camera shown in the viewer window")
    sim.add_argument("--pos-sensitivity", type=float, default=1.0, help="device translation scaling")
    sim.add_argument("--rot-sensitivity", type=float, default=1.0, help="device rotation scaling")
    flags = p.add_argument_group("episode flags (defaults of the save prompt)")
    group = flags.add_mutually_exclusive_group()
    group.add_argument("--expert", dest="expert", action="store_true", default=None,
                       help="mark saved episodes expert (default for --source teleop)")
    group.add_argument("--no-expert", dest="expert", action="store_false", help="mark them non-expert")
    flags.add_argument("--source", default="teleop", choices=list(SOURCES))
    flags.add_argument("--success", default="auto", choices=["auto", "true", "false", "unknown"],
                       help="auto: the simulator's success check (unknown on a real arm)")
    flags.add_argument("--operator", default=None, help="stored in each episode's attrs (default: $USER)")
    add_wait_option(p, _cmd_record)
