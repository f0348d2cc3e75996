"""``robot-offrl data ...``: inspect, label, validate, repair, reshape and import episode stores.

Each subcommand is a thin shell over ``robot_offrl.data``; user mistakes raise ``StoreError`` (a
``UserError``), which the root command prints as one line with exit status 2. Commands that write
take the store's write lock and accept ``--wait SECONDS`` to wait for another writer to finish.
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any


def _store(path: str, mode: str = "r") -> Any:
    from robot_offrl.data.store import EpisodeStore

    return EpisodeStore.open(path, mode=mode)  # type: ignore[arg-type]


def _bool_or_unknown(text: str) -> bool | None:
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    if value in ("unknown", "none", "null"):
        return None
    raise argparse.ArgumentTypeError(f"success must be true, false or unknown, got {text!r}")


def _cmd_info(args: argparse.Namespace) -> int:
    from robot_offrl.data.ops import format_summary, summarize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # info reports uncommitted steps itself
        summary = summarize(_store(args.store))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from robot_offrl.data.ops import format_episode_table

    print(format_episode_table(_store(args.store)))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from robot_offrl.data.ops import describe_episode

    print(json.dumps(describe_episode(_store(args.store), args.episode), indent=2))
    return 0


def _cmd_flag(args: argparse.Namespace) -> int:
    from robot_offrl.data.episode_ranges import parse_episode_ranges
    from robot_offrl.data.store import UNSET

    with _store(args.store, "r+") as store:
        indices = parse_episode_ranges(args.episodes, store.num_episodes)
        store.set_flags(
            indices,
            expert=args.expert,
            source=UNSET if args.source is None else args.source,
            success=getattr(args, "success", UNSET),
        )
    print(f"updated {len(indices)} episode(s): {args.episodes}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    import sys

    from robot_offrl.data.validate import find_problems, find_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported below as a problem
        store = _store(args.store)
    for doubt in find_warnings(store):
        print(f"{args.store}: warning: {doubt}", file=sys.stderr)
    problems = find_problems(store)
    if problems:
        for problem in problems:
            print(f"{args.store}: {problem}", file=sys.stderr)
        print(f"{args.store}: INVALID ({len(problems)} problem(s))", file=sys.stderr)
        return 1
    print(f"{args.store}: valid ({store.num_episodes} episodes, {store.num_steps} steps)")
    return 0


def _cmd_repair(args: argparse.Namespace) -> int:
    from robot_offrl.data.ops import repair

    report = repair(args.store, densify=args.densify)
    print(
        f"{args.store}: dropped {report['truncated_steps']} uncommitted steps, removed "
        f"{len(report['removed_temp_files'])} temp files and {len(report['removed_stale_dirs'])} stale folders"
        + (", finished an interrupted swap" if report["recovered_swap"] else "")
        + (f", wrote {len(report['densified_chunks'])} missing chunk(s) as zeros (the store is now dense)"
           if args.densify else "")
    )
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from robot_offrl.data.ops import merge_stores

    with merge_stores(args.out, args.inputs) as store:
        pass
    print(f"{args.out}: {store.num_episodes} episodes, {store.num_steps} steps from {len(args.inputs)} store(s)")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    with _store(args.store, "r+") as store:
        store.set_split(args.val_fraction, args.seed)
    print(
        f"{args.store}: train={len(store.split_indices('train'))} val={len(store.split_indices('val'))} "
        f"episodes (seed {args.seed})"
    )
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from robot_offrl.data.episode_ranges import parse_episode_ranges
    from robot_offrl.data.ops import delete_episodes

    store = _store(args.store)
    indices = parse_episode_ranges(args.episodes, store.num_episodes)
    with delete_episodes(args.store, indices) as after:
        pass
    print(f"{args.store}: deleted {len(indices)} episode(s); {after.num_episodes} remain")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    with _store(args.store, "r+") as store:
        stats = store.norm_stats(recompute=True)
    for key, s in stats.keys.items():
        print(f"{key}:")
        for name in ("min", "max", "mean", "std"):
            print(f"  {name:<5} {[round(float(v), 4) for v in getattr(s, name)]}")
    print(f"cached in {args.store} (over {stats.num_steps} steps)")
    return 0


def _cmd_export_video(args: argparse.Namespace) -> int:
    from robot_offrl.data.video import export_video

    path = export_video(_store(args.store), args.episode, args.camera, args.out, fps=args.fps)
    print(f"wrote {path}")
    return 0


def _cmd_import_robomimic(args: argparse.Namespace) -> int:
    from robot_offrl.data.robomimic_import import import_robomimic

    with import_robomimic(args.file, args.store, args.expert_mask or []) as store:
        pass
    expert = sum(m.expert for m in store.episodes)
    print(f"{args.store}: imported {store.num_episodes} demos ({expert} expert), {store.num_steps} steps")
    return 0


def _cmd_import_bag(args: argparse.Namespace) -> int:
    from robot_offrl_ros.bag_import import EpisodeFlags, import_bags, parse_split
    from robot_offrl_ros.record_inputs import load_recorder_yaml

    expert = args.source == "teleop" if args.expert is None else args.expert  # as `record` decides it
    flags = EpisodeFlags(expert=expert, source=args.source, success=getattr(args, "success", None))
    store = import_bags(args.bags, args.store, load_recorder_yaml(args.config), parse_split(args.split), flags)
    expert_n = sum(m.expert for m in store.episodes)
    print(f"{args.store}: imported {store.num_episodes} episodes ({expert_n} expert), {store.num_steps} steps")
    return 0


def _cmd_import_lerobot(args: argparse.Namespace) -> int:
    from robot_offrl.data.lerobot_io import import_lerobot

    with import_lerobot(args.src, args.store, expert_episodes=args.expert_episodes,
                        non_expert_episodes=args.non_expert_episodes, flag_column=args.flag_column) as store:
        pass
    expert = sum(m.expert for m in store.episodes)
    print(f"{args.store}: imported {store.num_episodes} episodes ({expert} expert), {store.num_steps} steps")
    return 0


def _cmd_export_lerobot(args: argparse.Namespace) -> int:
    from robot_offrl.data.lerobot_io import export_lerobot

    print(f"wrote {export_lerobot(args.store, args.out, video=args.video, repo_id=args.repo_id)}")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from robot_offrl.data.rerun_view import log_episode

    path = log_episode(_store(args.store), args.episode, save=args.save, connect=args.connect,
                       spawn=args.spawn, overwrite=args.overwrite)
    print(f"wrote {path}; open it with `rerun {path}`" if path else f"sent episode {args.episode} to the viewer")
    return 0


def _source(text: str) -> str:
    from robot_offrl.data.schema import SOURCES

    if text not in SOURCES:
        raise argparse.ArgumentTypeError(f"source must be one of {', '.join(SOURCES)}, got {text!r}")
    return text


def add_wait_option(parser: argparse.ArgumentParser, func: Any) -> None:
    """``--wait SECONDS`` for a command that writes a store: wait that long for another writer's lock.

    The one definition, shared with ``sim collect`` and ``record``; the wait applies to every store
    write the command makes (``robot_offrl.data.lock.wait_for_lock``).
    """
    parser.add_argument("--wait", type=_seconds, default=None, metavar="SECONDS",
                        help="if another process is writing the store, wait up to this long for it "
                        "(default: fail at once, naming the writer)")

    def run(args: argparse.Namespace) -> int:
        from robot_offrl.data.lock import wait_for_lock

        with wait_for_lock(args.wait):
            return int(func(args) or 0)

    parser.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    data = subparsers.add_parser(
        "data",
        help="inspect, label, validate, repair, merge, split and import episode stores",
        description="Episode store operations (zarr v3 stores; see docs/dataset.md).",
        epilog="Example: robot-offrl data info data/lift.zarr",
        formatter_class=fmt,
    )
    data.set_defaults(func=lambda _args: data.print_help() or 0)
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")

    def add(name: str, help_text: str, example: str, func: Any, writes: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=f"Example:\n  {example}",
                           formatter_class=fmt)
        p.set_defaults(func=func)
        if writes:
            add_wait_option(p, func)
        return p

    p = add("info", "summary: episodes by source/flag/success, steps, keys, size", "robot-offrl data info data/lift.zarr --json", _cmd_info)
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("list", "one line per episode", "robot-offrl data list data/lift.zarr", _cmd_list)
    p.add_argument("store")

    p = add("show", "one episode's labels, attributes and per-key ranges", "robot-offrl data show data/lift.zarr 3", _cmd_show)
    p.add_argument("store")
    p.add_argument("episode", type=int)

    p = add("flag", "relabel episodes (no data is rewritten)",
            "robot-offrl data flag data/lift.zarr --episodes 0,3-5 --no-expert --source failed --success false", _cmd_flag, writes=True)
    p.add_argument("store")
    p.add_argument("--episodes", required=True, help="indices and inclusive ranges, e.g. 0,3-5")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--expert", dest="expert", action="store_const", const=True, default=None)
    group.add_argument("--no-expert", dest="expert", action="store_const", const=False)
    p.add_argument("--source", type=_source, default=None)
    p.add_argument("--success", type=_bool_or_unknown, default=argparse.SUPPRESS, help="true, false or unknown")

    p = add("validate", "check every episode against the schema (exit 0 when valid)", "robot-offrl data validate data/lift.zarr", _cmd_validate)
    p.add_argument("store")

    p = add("repair", "drop uncommitted steps and temp files an interrupted write left", "robot-offrl data repair data/lift.zarr", _cmd_repair, writes=True)
    p.add_argument("store")
    p.add_argument("--densify", action="store_true",
                   help="also write the missing chunks of a store made before dense chunks as explicit zeros and mark "
                        "it dense (only when `data validate` shows they were all-zero, not lost)")

    p = add("merge", "write a new store with the episodes of several stores (same schema)",
            "robot-offrl data merge data/all.zarr data/expert.zarr data/play.zarr", _cmd_merge, writes=True)
    p.add_argument("out")
    p.add_argument("inputs", nargs="+")

    p = add("split", "choose validation episodes (stratified by expert flag, stored in the store)",
            "robot-offrl data split data/lift.zarr --val-fraction 0.1 --seed 0", _cmd_split, writes=True)
    p.add_argument("store")
    p.add_argument("--val-fraction", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)

    p = add("delete", "delete episodes (the store is rebuilt beside itself and swapped in)",
            "robot-offrl data delete data/lift.zarr --episodes 2,7-9", _cmd_delete, writes=True)
    p.add_argument("store")
    p.add_argument("--episodes", required=True, help="indices and inclusive ranges, e.g. 0,3-5")

    p = add("stats", "compute and cache normalisation statistics", "robot-offrl data stats data/lift.zarr", _cmd_stats, writes=True)
    p.add_argument("store")

    p = add("export-video", "write one episode's camera frames to an MP4",
            "robot-offrl data export-video data/lift.zarr 0 --camera agentview_image --out ep0.mp4", _cmd_export_video)
    p.add_argument("store")
    p.add_argument("episode", type=int)
    p.add_argument("--camera", required=True, help="an image key of the store")
    p.add_argument("--out", required=True, help="output .mp4 path")
    p.add_argument("--fps", type=float, default=None, help="default: the store's control rate")

    p = add("import-robomimic", "convert a robomimic HDF5 (filter-key masks -> expert flags)",
            "robot-offrl data import-robomimic lift_ph.hdf5 data/lift.zarr --expert-mask train", _cmd_import_robomimic, writes=True)
    p.add_argument("file")
    p.add_argument("store")
    p.add_argument("--expert-mask", nargs="+", action="extend", metavar="KEY", help="filter keys whose demos are expert")

    p = add("import-bag", "turn rosbag2 recordings (MCAP or sqlite3) into episodes, as the ROS recorder would",
            "robot-offrl data import-bag bags/demo_01 data/arm.zarr --config hardware/config/record.yaml "
            "--split topic:/episode", _cmd_import_bag, writes=True)
    p.add_argument("bags", nargs="+", metavar="BAG", help="a bag folder (metadata.yaml + .mcap/.db3) or a folder of them")
    p.add_argument("store", help="the new store (must not exist)")
    p.add_argument("--config", required=True, help="recorder YAML: topics, keys, rate (hardware/config/record.yaml)")
    p.add_argument("--split", default="bag", help="bag: one episode per bag (default); topic:/TOPIC: std_msgs "
                   "Bool (true start, false stop) or String ('start|stop [expert=..] [source=..] [success=..]'); "
                   "gap:SECONDS: a new episode after a silence that long")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--expert", dest="expert", action="store_const", const=True, default=None,
                       help="mark episodes expert (default for --source teleop; a marker may override)")
    group.add_argument("--non-expert", "--no-expert", dest="expert", action="store_const", const=False)
    p.add_argument("--source", type=_source, default="teleop")
    p.add_argument("--success", type=_bool_or_unknown, default=argparse.SUPPRESS, help="true, false or unknown")

    p = add("import-lerobot", "convert a local LeRobot v2.1 dataset folder (all expert unless told otherwise)",
            "robot-offrl data import-lerobot ~/lerobot/pusht data/pusht.zarr --non-expert-episodes 10-19",
            _cmd_import_lerobot, writes=True)
    p.add_argument("src", metavar="DATASET_DIR", help="root of a local LeRobot dataset (nothing is downloaded)")
    p.add_argument("store")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--expert-episodes", metavar="RANGES", help="only these episodes are expert, e.g. 0-9")
    group.add_argument("--non-expert-episodes", metavar="RANGES", help="these episodes are not expert")
    p.add_argument("--flag-column", metavar="FEATURE",
                   help="per-frame feature holding the expert flag (default: 'expert' when present)")

    p = add("export-lerobot", "write a store as a LeRobot v2.1 dataset folder (flags and labels in meta/robot_offrl.json)",
            "robot-offrl data export-lerobot data/lift.zarr out/lift_lerobot", _cmd_export_lerobot)
    p.add_argument("store")
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("--video", action="store_true",
                   help="encode cameras as lerobot's AV1 videos (small, lossy) instead of PNG frames (lossless)")
    p.add_argument("--repo-id", default=None, help="repo id written into the dataset (default robot_offrl/<OUT_DIR name>)")

    p = add("view", "log one episode to Rerun (saved as .rrd unless --connect/--spawn)",
            "robot-offrl data view data/lift.zarr --episode 3 --save ep3.rrd", _cmd_view)
    p.add_argument("store")
    p.add_argument("--episode", type=int, required=True)
    p.add_argument("--save", metavar="FILE.rrd", default=None, help="default ./episode_N.rrd")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --save file")
    view_target = p.add_mutually_exclusive_group()
    view_target.add_argument("--connect", metavar="URL", default=None, help="stream to a running Rerun viewer")
    view_target.add_argument("--spawn", action="store_true", help="start a Rerun viewer and stream to it")
