"""Initial-condition sweeps: a grid over a region, K seeded episodes per cell, worker processes, shards.

Reproducibility is the design constraint: every episode's seed is derived from (seed, cell, episode)
only and every worker builds its own environment, so 1 worker, 8 workers or 4 shards on 4 hosts give
the same sweep.json. Workers are 'spawn' processes because robosuite/MuJoCo state is not thread-safe
and forking a process that already holds an OpenGL context is unsafe.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from robot_offrl.errors import ConfigError, UserError
from robot_offrl_sim.initial_conditions import InitialCondition
from robot_offrl_sim.perturbations import Perturbation
from robot_offrl_sim.spec import TaskSpec, load_task
from robot_offrl_sim.sweep_backends import Progress, check_backend, run_jobs

SWEEP_FORMAT = "robot_offrl.sweep/1"
# Cells of one sweep: 100x100 is already ~10^4 episodes. Checked before the cell list is built,
# because a typo like 100000x100000 would otherwise allocate 10^10 cells and be OOM-killed.
MAX_GRID_CELLS = 10_000


@dataclass(frozen=True)
class SweepConfig:
    """What determines the results (`to_dict`) plus how to run them (workers, shard, outputs)."""

    task: str
    policy: str  # "scripted:<task>" or "checkpoint:<run dir>"
    region: str = "wide"
    grid: tuple[int, int] = (7, 7)
    episodes_per_cell: int = 1
    perturbations: tuple[Perturbation, ...] = ()
    seed: int = 0
    horizon: int | None = None
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    video: int = 0
    video_size: int = 128
    record: str | None = None
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    backend: str = "local"  # where the episodes run (sweep_backends.py); never changes the results
    backend_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"address": ...} for ray

    def validate(self) -> TaskSpec:
        spec = load_task(self.task)
        spec.region(self.region)
        nx, ny = self.grid
        if nx < 1 or ny < 1:
            raise ConfigError(f"grid {nx}x{ny} has no cells: both sides must be at least 1")
        if nx * ny > MAX_GRID_CELLS:
            raise ConfigError(
                f"grid {nx}x{ny} has {nx * ny} cells, more than the {MAX_GRID_CELLS} a sweep allows; use a coarser "
                "grid, or shards of a smaller one"
            )
        if self.episodes_per_cell < 1:
            raise ConfigError(f"episodes per cell must be >= 1, got {self.episodes_per_cell}")
        check_backend(self.backend)
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        i, n = self.shard
        if n < 1 or not 0 <= i < n:
            raise ConfigError(f"shard {i}/{n} is not valid: need 0 <= i < n")
        if self.horizon is not None and self.horizon < 1:
            raise ConfigError(f"horizon must be >= 1, got {self.horizon}")
        if self.video < 0:
            raise ConfigError(f"--video must be >= 0, got {self.video}")
        kind, arg = parse_policy(self.policy, spec.name)
        if kind == "checkpoint":
            check_checkpoint_task(arg, spec.name)
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "policy": self.policy,
            "region": self.region,
            "grid": list(self.grid),
            "episodes_per_cell": self.episodes_per_cell,
            "perturbations": [p.to_dict() for p in self.perturbations],
            "seed": self.seed,
            "horizon": self.horizon,
            "policy_kwargs": dict(sorted(self.policy_kwargs.items())),
        }


def parse_policy(text: str, task: str) -> tuple[str, str]:
    kind, _, arg = text.partition(":")
    if kind not in ("scripted", "checkpoint") or not arg:
        raise ConfigError(f"policy {text!r} must be scripted:<task> or checkpoint:<run dir>")
    if kind == "scripted" and arg != task:
        raise ConfigError(f"policy {text!r} is the scripted expert of {arg!r} but the sweep task is {task!r}")
    return kind, arg


def check_checkpoint_task(path: str, task: str) -> None:
    """A policy trained on one task swept on another succeeds nowhere, for no reason a report shows.

    Reads only the checkpoint's config.yaml, so the refusal comes before any worker or simulator starts.
    """
    from robot_offrl.checkpoint import read_checkpoint_config, resolve_checkpoint

    folder = resolve_checkpoint(path)
    trained = read_checkpoint_config(folder).get("task", {})
    trained_name = trained.get("name") if hasattr(trained, "get") else None
    if trained_name is not None and str(trained_name) != task:
        raise ConfigError(
            f"checkpoint {folder} was trained on task {trained_name!r} but the sweep task is {task!r}; "
            f"sweep it with --task {trained_name}"
        )


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as err:
        raise ConfigError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from err
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard {text!r} is not valid: need 0 <= i < n")
    return i, n


def episode_seed(seed: int, cell: int, episode: int) -> int:
    """Depends on (seed, cell, episode) only: the same episode whichever worker or shard runs it."""
    return int(np.random.SeedSequence([int(seed), int(cell), int(episode)]).generate_state(1)[0])


def cells(spec: TaskSpec, config: SweepConfig) -> list[dict[str, Any]]:
    region = spec.region(config.region)
    narrow = spec.narrow
    nx, ny = config.grid
    out = []
    for cid, (x, y) in enumerate(region.grid(nx, ny)):
        out.append(
            {"cell": cid, "ix": cid % nx, "iy": cid // nx, "x": round(x, 6), "y": round(y, 6),
             "in_narrow": narrow.contains(x, y)}
        )
    return out


def shard_cells(all_cells: list[dict[str, Any]], shard: tuple[int, int]) -> list[dict[str, Any]]:
    """Stable partition: cell ids i, i+n, i+2n, ... (balanced when neighbouring cells differ in cost)."""
    i, n = shard
    return [c for c in all_cells if c["cell"] % n == i]


def initial_condition_for(spec: TaskSpec, config: SweepConfig, cell: dict[str, Any], episode: int) -> InitialCondition:
    seed = episode_seed(config.seed, cell["cell"], episode)
    yaw_lo, yaw_hi = spec.region(config.region).yaw
    yaw = float(np.random.default_rng([seed, 0xA7]).uniform(yaw_lo, yaw_hi))
    return InitialCondition(x=cell["x"], y=cell["y"], yaw=round(yaw, 6), region=f"grid:{config.region}", seed=seed)


# ----------------------------------------------------------------------------- policies and workers
def load_policy(text: str, task: str, **kwargs: Any) -> Any:
    """Instantiate the policy named by `text` in this process (workers call it after spawning)."""
    kind, arg = parse_policy(text, task)
    if kind == "scripted":
        from robot_offrl_sim.experts import make_expert

        return make_expert(arg)
    # Written against docs/contracts.md (robot_offrl.runtime.PolicyRuntime); imported lazily so a
    # scripted sweep never needs torch.
    from robot_offrl.runtime import PolicyRuntime

    return PolicyRuntime.load(arg, **kwargs)


def policy_cameras(policy: Any) -> tuple[list[str], int | None]:
    """Cameras (and image size) a learned policy reads; none for a scripted one, which states no inputs."""
    from robot_offrl.runtime.protocol import PlanningPolicy

    cameras = policy.cameras if isinstance(policy, PlanningPolicy) else ()
    return [c.name for c in cameras], (cameras[-1].height if cameras else None)


_WORKER: dict[str, Any] = {}


def _worker_state(cfg: dict[str, Any], render_video: bool) -> tuple[Any, Any]:
    key = json.dumps([cfg, render_video], sort_keys=True)
    if _WORKER.get("key") != key:
        from robot_offrl_sim.tasks import make_env

        if "env" in _WORKER:
            _WORKER["env"].close()
        policy = load_policy(cfg["policy"], cfg["task"], **cfg["policy_kwargs"])
        cams, size = policy_cameras(policy)
        env = make_env(cfg["task"], cameras=cams, camera_size=size, horizon=cfg["horizon"], render_video=render_video)
        _WORKER.update(key=key, env=env, policy=policy)
    return _WORKER["env"], _WORKER["policy"]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One episode of one cell, in whatever process runs it. Returns JSON results plus optional arrays."""
    from robot_offrl_sim.rollout import run_episode

    cfg = job["config"]
    env, policy = _worker_state(cfg, job["render_video"])
    spec = env.spec
    config = SweepConfig(task=cfg["task"], policy=cfg["policy"], region=cfg["region"], seed=cfg["seed"])
    ic = initial_condition_for(spec, config, job["cell"], job["episode"])
    res = run_episode(
        env,
        policy,
        seed=ic.seed or 0,
        initial_condition=ic,
        horizon=cfg["horizon"],
        perturbations=[Perturbation.from_mapping(p) for p in cfg["perturbations"]],
        stop_on_success=True,
        record=job["record"],
        video_camera="agentview" if job["video"] else None,
        video_size=job["video_size"],
    )
    out = {"cell": job["cell"]["cell"], "episode": job["episode"], "result": res.to_dict()}
    if hasattr(policy, "describe"):  # a checkpoint: how it acted here (amp=auto depends on the machine)
        out["acting"] = policy.describe()
    if job["record"]:
        out["obs"], out["actions"] = res.obs, res.actions
    if job["video"]:
        out["frames"] = res.frames
    return out


class SweepStopped(UserError):
    """An episode runner could not go on (a process died, a service stopped answering).

    Carries the outputs of the episodes that did finish, so run_sweep still writes them.
    """

    def __init__(self, message: str, outputs: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.outputs = outputs


class EpisodeRunner(Protocol):
    """Runs a sweep's jobs somewhere else than this module's workers (robot_offrl_ros.sim_sweep_backend).

    ``run`` returns one output per job as ``run_job`` does ({"cell", "episode", "result"}) or raises
    SweepStopped with those it finished; ``details`` goes into timing.json (rates, latencies, logs).
    """

    name: str

    def run(self, jobs: list[dict[str, Any]], progress: bool) -> list[dict[str, Any]]: ...

    def details(self) -> dict[str, Any]: ...


def run_local(jobs: list[dict[str, Any]], config: SweepConfig, progress: bool) -> list[dict[str, Any]]:
    """The ``local`` back end: ``config.workers`` spawned processes on this machine (1: this process)."""
    results: list[dict[str, Any]] = []
    counter = Progress(len(jobs), progress)
    if config.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(run_job(job))
            counter.step()
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(config.workers, len(jobs))) as pool:
            for out in pool.imap_unordered(run_job, jobs, chunksize=1):
                results.append(out)
                counter.step()
    counter.close()
    return results


# ----------------------------------------------------------------------------- aggregation
def summarize(config_dict: dict[str, Any], cell_list: list[dict[str, Any]], shard: tuple[int, int] | None) -> dict[str, Any]:
    """sweep.json content; totals and the narrow region's rate are recomputed from the cells."""
    cell_list = sorted(cell_list, key=lambda c: c["cell"])
    eps = sum(c["episodes"] for c in cell_list)
    succ = sum(c["successes"] for c in cell_list)
    narrow = [c for c in cell_list if c["in_narrow"]]
    n_eps = sum(c["episodes"] for c in narrow)
    n_succ = sum(c["successes"] for c in narrow)
    return {
        "format": SWEEP_FORMAT,
        "config": config_dict,
        "shard": None if shard is None or shard[1] == 1 else list(shard),
        "cells": cell_list,
        "totals": {"cells": len(cell_list), "episodes": eps, "successes": succ, "rate": succ / eps if eps else None},
        "narrow": {
            "cells": len(narrow),
            "episodes": n_eps,
            "successes": n_succ,
            "rate": n_succ / n_eps if n_eps else None,
        },
    }


def write_outputs(out: Path, summary: dict[str, Any], videos: Iterable[Path] = ()) -> None:
    from robot_offrl_sim.report import write_heatmap, write_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    spec = load_task(summary["config"]["task"])
    write_heatmap(summary, spec, out / "heatmap.png")
    write_report(summary, spec, out / "report.md", sorted(videos))


def run_sweep(config: SweepConfig, out: str | Path, progress: bool = False,
              runner: EpisodeRunner | None = None) -> dict[str, Any]:
    """Run the sweep (or this shard of it) and write sweep.json, heatmap.png, report.md, videos/.

    ``runner`` executes the episodes elsewhere (config.backend names it); the grid, cells, seeds and
    outputs are this function's either way, so direct and ROS results are one table. When a runner
    stops early the finished episodes are still written (sweep.json says ``stopped``), then the
    error is raised.
    """
    spec = config.validate()
    if runner is not None and runner.name != config.backend:
        raise ConfigError(f"sweep backend {config.backend!r} needs its runner (got {getattr(runner, 'name', None)!r})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file; the sweep writes a folder there")
    mine = shard_cells(cells(spec, config), config.shard)
    cfg = config.to_dict()
    jobs = []
    for cell in mine:
        for ep in range(config.episodes_per_cell):
            jobs.append(
                {"config": cfg, "cell": cell, "episode": ep, "record": config.record is not None,
                 "video": len(jobs) < config.video, "render_video": config.video > 0,
                 "video_size": config.video_size}
            )
    t0 = time.monotonic()
    stopped: SweepStopped | None = None
    try:
        if runner is None:
            outputs = run_jobs(config.backend, jobs, config, progress)
        else:
            outputs = sorted(runner.run(jobs, progress), key=lambda r: (r["cell"], r["episode"]))
    except SweepStopped as exc:
        stopped, outputs = exc, sorted(exc.outputs, key=lambda r: (r["cell"], r["episode"]))
    elapsed = time.monotonic() - t0
    by_cell: dict[int, list[dict[str, Any]]] = {c["cell"]: [] for c in mine}
    for o in outputs:
        by_cell[o["cell"]].append(o["result"])
    cell_list = []
    for cell in mine:
        eps = by_cell[cell["cell"]]
        if not eps:  # only when a runner stopped early: the cell was never run
            continue
        succ = sum(1 for e in eps if e["success"])
        cell_list.append({**cell, "episodes": len(eps), "successes": succ, "rate": succ / len(eps), "results": eps})
    summary = summarize(cfg, cell_list, config.shard)
    if stopped is not None:
        summary["stopped"] = {"after_episodes": len(outputs), "of": len(jobs), "error": str(stopped)}
    videos = _write_videos(out, outputs)
    if config.record is not None and outputs:
        _record(config, spec, outputs)
    write_outputs(out, summary, videos)
    timing = {"episodes": len(outputs), "backend": config.backend, "workers": config.workers,
              "elapsed_s": round(elapsed, 3),
              "episodes_per_min": round(len(outputs) / elapsed * 60.0, 3) if elapsed > 0 else None}
    acting = next((o["acting"] for o in outputs if "acting" in o), None)
    if acting is not None:
        timing["acting"] = acting
    if runner is not None:
        timing["backend_details"] = runner.details()
    (out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    if stopped is not None:
        raise SweepStopped(f"{stopped} -- the sweep stopped after {len(outputs)} of {len(jobs)} episode(s); "
                           f"their results are in {out / 'sweep.json'}", outputs)
    return summary


def _write_videos(out: Path, outputs: list[dict[str, Any]]) -> list[Path]:
    from robot_offrl_sim.report import write_video

    paths = []
    for o in outputs:
        if o.get("frames"):
            path = out / "videos" / f"cell{o['cell']:03d}_ep{o['episode']:02d}.mp4"
            write_video(o["frames"], path)
            paths.append(path.relative_to(out))
    return paths


def _record(config: SweepConfig, spec: TaskSpec, outputs: list[dict[str, Any]]) -> None:
    from robot_offrl.data import EpisodeStore
    from robot_offrl_sim.tasks import store_schema

    first = outputs[0]["obs"]
    schema = store_schema(spec, {k: v.shape[1:] for k, v in first.items()})
    with EpisodeStore.open(config.record, mode="a", schema=schema) as store:  # the write lock ends with the block
        for o in outputs:
            res = o["result"]
            attrs = {
                "task": spec.name, "initial_condition": res["initial_condition"], "seed": res["seed"],
                "perturbations": res["perturbations"], "success_step": res["success_step"],
                "final_object_pose": res["final_object_pose"], "simulator": "robosuite",
                "policy": config.policy, "sweep_cell": o["cell"], "sweep_episode": o["episode"],
            }
            store.append_episode(obs=o["obs"], actions=o["actions"], expert=False, source="policy_rollout",
                                 success=res["success"], attrs=attrs)


def merge_sweeps(dirs: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Merge shard outputs into one sweep identical to an unsharded run of the same config."""
    if not dirs:
        raise ConfigError("merge needs at least one sweep directory")
    loaded = []
    for d in dirs:
        path = Path(d) / "sweep.json"
        if not path.is_file():
            raise UserError(f"{path}: not found; run `robot-offrl sweep ... --out {d}` first")
        data = json.loads(path.read_text())
        if data.get("format") != SWEEP_FORMAT:
            raise UserError(f"{path}: format {data.get('format')!r} is not {SWEEP_FORMAT!r}")
        loaded.append((Path(d), data))
    config = loaded[0][1]["config"]
    for d, data in loaded[1:]:
        if data["config"] != config:
            raise UserError(f"{d}: sweep config differs from {loaded[0][0]}; only shards of one sweep merge")
    shards = [tuple(data["shard"]) if data["shard"] else (0, 1) for _, data in loaded]
    ns = {n for _, n in shards}
    if len(ns) != 1 or sorted(i for i, _ in shards) != list(range(ns.pop())):
        raise UserError(f"shards {sorted(shards)} do not cover the sweep exactly once (need 0/n .. n-1/n)")
    merged = [c for _, data in loaded for c in data["cells"]]
    summary = summarize(config, merged, None)
    out = Path(out)
    videos = []
    for d, _ in loaded:
        for v in sorted((d / "videos").glob("*.mp4")):
            dest = out / "videos" / v.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if v.resolve() != dest.resolve():
                shutil.copyfile(v, dest)
            videos.append(dest.relative_to(out))
    write_outputs(out, summary, videos)
    return summary
