"""Sweep episodes through ROS 2: policy_node and the simulated arm as separate processes over real DDS.

robot_offrl_sim.sweep owns the grid, cells, seeds and outputs (sweep.json, heatmap, report); this
runner only executes each job's episode on the graph a deployment uses, so "validated in sim" and
"validated through ROS 2" are rows of one table. Per episode it

1. holds the policy (``/policy_node/stop``): the hold is stamped before the reset, so the sim arm
   drops it rather than carrying it into the new episode;
2. sets the sim arm's episode parameters (seed, exact object pose, perturbation, horizon) through its
   SetParameters service and calls ``/sim_arm/reset``;
3. starts the policy again (``/policy_node/start`` clears its observation history, as a direct
   sweep's ``policy.reset()`` does);
4. waits for the sim arm's ``~/episode_result``: the task's own success check, step count and final
   object pose, decided by the simulator, never by this process.

policy_node runs with ``plan_ahead: chunk``: each chunk runs to near its end and the next plan is
timed to arrive before it, as ``PolicyRuntime.act`` executes ``n_action_steps`` in a direct sweep.
Replanning every period instead samples a diffusion policy afresh each step, which switches between
modes of its action distribution: with one lift_joint checkpoint, on 8 episodes the direct sweep
lifted in all 8, the same timing rules replanning every period lifted in 0-1, 8-action chunks with
one period of latency in 4-5.

Everything runs on the sim arm's ``/clock`` (policy_node with ``use_sim_time``), paced to
``real_time_factor`` of the wall clock: slower than real time leaves the policy's inference the
share of an episode it would have on a faster machine. Besides the results, each episode's command
stream is measured (messages/s, executed actions/s, obs->command latency in sim and wall time).

Whatever goes wrong (a process exits, a service stops answering, /clock stops) ends the sweep
with one clear line, the finished episodes kept (sweep.SweepStopped), and both processes stopped.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

import robot_offrl
import robot_offrl_sim
from robot_offrl.errors import ConfigError
from robot_offrl_sim.perturbations import Perturbation
from robot_offrl_sim.spec import load_task
from robot_offrl_sim.sweep import (
    SweepConfig,
    SweepStopped,
    initial_condition_for,
    policy_cameras,
)
from robot_offrl_sim.sweep_backends import Progress

from .command_stats import executed_stream, obs_to_command_latencies
from .sim_arm_node import COMMAND_QOS, LATCHED_QOS
from .sim_arm_params import SIM_ARM_PARAMS
from .spinning import SpinThread

BACKEND = "ros"
DOMAIN_RANGE = (102, 166)  # clear of the test suite's ranges (tests/ros: 1-100 and 167-231)
GRIPPER_TOPIC = "/gripper_controller/joint_trajectory"
TRAJECTORY_TOPIC = "/joint_trajectory_controller/joint_trajectory"
ACTING_PARAMS = {"num_candidates": "num_candidates", "n_action_steps": "n_action_steps"}  # PolicyRuntime -> node
POSE_TOLERANCE = 1e-6
SIM_ARM_DEFAULTS = {spec.name: spec.default for spec in SIM_ARM_PARAMS}


@dataclass(frozen=True)
class RosSweepOptions:
    """How the ROS graph runs. Only ``real_time_factor`` can change results (it sets how much sim time
    inference takes), so only it goes into the sweep's config; the rest are timeouts and places."""

    real_time_factor: float = 0.5
    domain_id: int | None = None  # None: a random free one in DOMAIN_RANGE
    startup_timeout_s: float = 1800.0  # wall, a hang guard: both import torch/robosuite, load the checkpoint
    service_timeout_s: float = 120.0  # wall: one service call, or /clock standing still (a loaded CPU is slow)
    log_dir: Path | None = None  # the processes' output; None: not kept

    def config_options(self) -> dict[str, Any]:
        return {"real_time_factor": self.real_time_factor}


def check_ros_sweep(config: SweepConfig, options: RosSweepOptions) -> None:
    """Refuse, before any process starts, what the ROS graph cannot run the way a direct sweep does."""
    if not options.real_time_factor > 0:
        raise ConfigError(f"--real-time-factor must be > 0 for a ROS sweep (policy_node needs time to plan), "
                          f"got {options.real_time_factor}")
    if not config.policy.startswith("checkpoint:"):
        raise ConfigError("a ROS sweep runs a checkpoint in policy_node: give --checkpoint (a scripted expert "
                          "reads the object's pose, which a real arm does not report)")
    if config.workers != 1:
        raise ConfigError("a ROS sweep runs one sim arm and one policy_node: --workers must be 1 (run shards "
                          "in parallel instead, each on its own ROS_DOMAIN_ID)")
    if config.video or config.record:
        raise ConfigError("--video and --record are direct-sweep options; record through ROS with "
                          "`robot-offrl record --ros`")
    if len(config.perturbations) > 1 or any(p.kind not in ("object", "arm-nudge") for p in config.perturbations):
        raise ConfigError("the sim arm applies one object or arm-nudge perturbation per episode; got "
                          f"{[p.to_dict() for p in config.perturbations]}")
    unknown = sorted(set(config.policy_kwargs) - set(ACTING_PARAMS))
    if unknown:
        raise ConfigError(f"acting option(s) {unknown} are not policy_node parameters; a ROS sweep takes "
                          f"{sorted(ACTING_PARAMS)}")
    if options.domain_id is not None and not 0 <= options.domain_id <= 232:
        raise ConfigError(f"ROS domain id must be in 0..232, got {options.domain_id}")


def checkpoint_cameras(checkpoint: str) -> tuple[list[str], int | None]:
    """Cameras and image size the checkpoint observes, from its schema.json (no torch, no model)."""
    from robot_offrl.checkpoint import SCHEMA_FILE, resolve_checkpoint
    from robot_offrl.data.schema import StoreSchema

    saved = json.loads((resolve_checkpoint(checkpoint) / SCHEMA_FILE).read_text())
    store = StoreSchema.from_dict(saved["store"])
    keys = [store.key(k) for k in saved["obs_keys"]]  # what PolicyRuntime.obs_schema holds
    return policy_cameras(SimpleNamespace(obs_schema=keys))  # the direct sweep's reading of the same keys


def child_env(domain: int) -> dict[str, str]:
    """The children import this very tree (library, sim, ROS package) and talk on ``domain`` only."""
    roots = [str(Path(m.__file__).resolve().parents[1]) for m in (robot_offrl, robot_offrl_sim)]
    roots.append(str(Path(__file__).resolve().parents[1]))
    path = os.pathsep.join([*dict.fromkeys(roots), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "ROS_DOMAIN_ID": str(domain),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONUNBUFFERED": "1"}


def ros_args(params: dict[str, Any]) -> list[str]:
    out = ["--ros-args"]
    for name, value in params.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple):
            text = "[" + ",".join(f"'{v}'" if isinstance(v, str) else str(v) for v in value) + "]"
        else:
            text = str(value)
        out += ["-p", f"{name}:={text}"]
    return out


class _Graph:
    """The orchestrator's node: clock, results, commands and status in; the services it calls out."""

    def __init__(self, ctx: Context) -> None:
        self.node = Node("ros_sweep", context=ctx)
        self.lock = threading.Lock()
        self.clock_s = 0.0
        self.clock_wall: list[tuple[float, float]] = []  # (sim s, wall s when that sim time was published)
        self.last_clock_wall = 0.0
        self.results: dict[int, dict[str, Any]] = {}
        self.trajs: list[tuple[float, float, JointTrajectory]] = []  # (sim s, wall s, msg) on arrival
        self.chunks: list[tuple[float, float, JointTrajectory]] = []
        self.status: dict[str, Any] = {}
        n = self.node
        n.create_subscription(Clock, "/clock", self._on_clock, 50)
        n.create_subscription(String, "/sim_arm/episode_result", self._on_result, LATCHED_QOS)
        n.create_subscription(JointTrajectory, TRAJECTORY_TOPIC, lambda m: self._keep(self.trajs, m), COMMAND_QOS)
        n.create_subscription(JointTrajectory, "/policy_node/action_chunk", lambda m: self._keep(self.chunks, m), 10)
        n.create_subscription(String, "/policy_node/status", self._on_status, LATCHED_QOS)
        self.set_params = n.create_client(SetParameters, "/sim_arm/set_parameters")
        self.reset = n.create_client(Trigger, "/sim_arm/reset")
        self.start = n.create_client(Trigger, "/policy_node/start")
        self.stop = n.create_client(Trigger, "/policy_node/stop")
        self.spin = SpinThread(self.node)

    def _on_clock(self, msg: Clock) -> None:
        with self.lock:
            self.clock_s = msg.clock.sec + msg.clock.nanosec * 1e-9
            self.last_clock_wall = time.monotonic()
            self.clock_wall.append((self.clock_s, self.last_clock_wall))

    def _on_result(self, msg: String) -> None:
        result = json.loads(msg.data)
        with self.lock:
            self.results[int(result["sim_arm"]["episode"])] = result

    def _keep(self, into: list[tuple[float, float, JointTrajectory]], msg: JointTrajectory) -> None:
        with self.lock:
            into.append((self.clock_s, time.monotonic(), msg))

    def _on_status(self, msg: String) -> None:
        with self.lock:
            self.status = json.loads(msg.data)

    def close(self) -> None:
        self.spin.close()
        self.node.destroy_node()


class RosSweepRunner:
    """sweep.EpisodeRunner over ROS 2: owns the two processes for the sweep's lifetime."""

    name = BACKEND

    def __init__(self, config: SweepConfig, options: RosSweepOptions,
                 after_episode: Callable[[RosSweepRunner, dict[str, Any]], None] | None = None) -> None:
        check_ros_sweep(config, options)
        self.config, self.options, self.after_episode = config, options, after_episode
        self.spec = load_task(config.task)
        self.checkpoint = config.policy.partition(":")[2]
        self.horizon = int(config.horizon or self.spec.horizon)
        self.dt = 1.0 / float(self.spec.control_freq)
        self.episodes: list[dict[str, Any]] = []  # per-episode ROS numbers, for details()
        self.domain: int | None = None
        self.sim_proc: subprocess.Popen[bytes] | None = None
        self.node_proc: subprocess.Popen[bytes] | None = None
        self._logs: dict[str, Path] = {}
        self._ctx: Context | None = None
        self._graph: _Graph | None = None

    # ------------------------------------------------------------------ EpisodeRunner
    def run(self, jobs: list[dict[str, Any]], progress: bool) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = []
        counter = Progress(len(jobs), progress)
        try:
            self._start()
            for job in jobs:
                outputs.append(self._episode(job))
                counter.step()
                if self.after_episode is not None:
                    self.after_episode(self, outputs[-1])
        except (SweepStopped, ConfigError) as exc:
            raise SweepStopped(f"ROS sweep: {exc}", outputs) from exc
        finally:
            counter.close()
            self._shutdown()
        return outputs

    def details(self) -> dict[str, Any]:
        """Command stream numbers over all episodes (the benchmark's ROS columns) and the per-episode ones."""
        def pooled(key: str) -> list[float]:
            return [v for e in self.episodes for v in e.get(f"_{key}", [])]

        out: dict[str, Any] = {"name": BACKEND, "domain_id": self.domain, **self.options.config_options(),
                               "logs": {k: str(v) for k, v in self._logs.items()}}
        sim_s = sum(e["sim_s"] for e in self.episodes)
        if sim_s > 0:
            out["messages_per_sim_s"] = round(sum(e["messages"] for e in self.episodes) / sim_s, 3)
            out["executed_per_sim_s"] = round(sum(e["executed"] for e in self.episodes) / sim_s, 3)
        for key in ("latency_sim_ms", "latency_wall_ms"):
            values = pooled(key)
            if values:
                out[f"{key}_p50"] = round(float(np.percentile(values, 50)), 1)
                out[f"{key}_p99"] = round(float(np.percentile(values, 99)), 1)
        out["episodes"] = [{k: v for k, v in e.items() if not k.startswith("_")} for e in self.episodes]
        return out

    # ------------------------------------------------------------------ processes
    def _spawn(self, what: str, module: str, params: dict[str, Any]) -> subprocess.Popen[bytes]:
        assert self.domain is not None
        log_dir = self.options.log_dir
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            self._logs[what] = log_dir / f"{what}.log"
            sink: Any = self._logs[what].open("wb")
        else:
            sink = subprocess.DEVNULL
        try:
            return subprocess.Popen([sys.executable, "-m", module, *ros_args(params)], env=child_env(self.domain),
                                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if sink is not subprocess.DEVNULL:
                sink.close()

    def _free_domain(self) -> int:
        """A domain with nobody on it (this host only): other sweeps and tests must not cross-talk."""
        if self.options.domain_id is not None:
            return self.options.domain_id
        for _ in range(5):
            domain = random.randint(*DOMAIN_RANGE)
            ctx = Context()
            rclpy.init(context=ctx, domain_id=domain)
            try:
                probe = Node("ros_sweep_probe", context=ctx)
                time.sleep(1.0)  # discovery
                others = [n for n, _ in probe.get_node_names_and_namespaces() if n != "ros_sweep_probe"]
                probe.destroy_node()
            finally:
                ctx.try_shutdown()
            if not others:
                return domain
        raise SweepStopped(f"no free ROS domain in {DOMAIN_RANGE} after 5 tries; pass one with --ros-domain-id", [])

    def _start(self) -> None:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.domain = self._free_domain()
        cams, size = checkpoint_cameras(self.checkpoint)
        control_hz = float(self.spec.control_freq)
        cam_topics = ["/camera/image_raw"] if len(cams) == 1 else [f"/sim_arm/{c}/image_raw" for c in cams]
        sim_params: dict[str, Any] = {
            "task": self.config.task, "real_time_factor": self.options.real_time_factor, "horizon": 0,
            # Every control step sees a fresh frame, as in a direct sweep.
            "camera_rate_hz": control_hz, "trajectory_topic": TRAJECTORY_TOPIC, "gripper_topic": GRIPPER_TOPIC,
        }
        if cams:
            sim_params.update(camera_names=cams, camera_topics=cam_topics)
            if size:
                sim_params["camera_size"] = size
        node_params: dict[str, Any] = {
            "checkpoint": self.checkpoint, "device": "cpu", "use_sim_time": True, "enable_control": True,
            "autostart": True, "trajectory_topic": TRAJECTORY_TOPIC, "gripper_topic": GRIPPER_TOPIC,
            "gripper_joint_names": list(SIM_ARM_DEFAULTS["gripper_joint_names"]),
            "joint_state_timeout_s": 0.5, "image_timeout_s": 0.5,
            # Chunks run as PolicyRuntime.act runs them in a direct sweep (n_action_steps, the next plan
            # timed to arrive before the end), not replanned every period: sampling a diffusion policy
            # afresh each period turned 8/8 direct lifts into 0-1/8 (module docstring).
            "plan_ahead": "chunk",
            **{ACTING_PARAMS[k]: int(v) for k, v in self.config.policy_kwargs.items()},
        }
        if cams:
            node_params.update(camera_topics=cam_topics, camera_keys=[f"{c}_image" for c in cams])
        self._ctx = Context()
        rclpy.init(context=self._ctx, domain_id=self.domain)
        self._graph = _Graph(self._ctx)
        self.sim_proc = self._spawn("sim_arm", "robot_offrl_ros.sim_arm_node", sim_params)
        end = time.monotonic() + self.options.startup_timeout_s
        self._wait(lambda: self._graph is not None and self._graph.clock_s > 0
                   and self._graph.reset.service_is_ready(), "the sim arm to start (/clock, /sim_arm/reset)", end)
        self.node_proc = self._spawn("policy_node", "robot_offrl_ros.policy_node", node_params)

        def running() -> bool:
            assert self._graph is not None
            with self._graph.lock:
                status = dict(self._graph.status)
            failed = self._log_line("policy_node", "configure failed:")
            if failed:  # autostart gives up at once; say why now rather than at the timeout
                raise SweepStopped(f"policy_node refused the checkpoint or its parameters: {failed}", [])
            return status.get("lifecycle") == "active" and self._graph.stop.service_is_ready()

        self._wait(running, "policy_node to configure and activate (autostart)", end)

    def _shutdown(self) -> None:
        """SIGINT both (policy_node holds the arm first), then kill what does not exit."""
        for proc in (self.node_proc, self.sim_proc):
            if proc is not None and proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)  # a stopped (hung) process cannot handle SIGINT
                    proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
        for proc in (self.node_proc, self.sim_proc):
            if proc is not None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        if self._ctx is not None:
            self._ctx.try_shutdown()
            self._ctx = None

    # ------------------------------------------------------------------ waiting and calling
    def _log_line(self, what: str, marker: str) -> str:
        """The first line of ``what``'s log that contains ``marker``, from the marker on ('' if none)."""
        path = self._logs.get(what)
        text = path.read_text(errors="replace") if path is not None and path.is_file() else ""
        for line in text.splitlines():
            if marker in line:
                return line[line.index(marker):][:400]
        return ""

    def _log_tail(self, what: str) -> str:
        path = self._logs.get(what)
        if path is None or not path.is_file():
            return ""
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        return f" (last line of {path}: {lines[-1][:300]})" if lines else ""

    def _check_alive(self) -> None:
        for what, proc in (("sim_arm", self.sim_proc), ("policy_node", self.node_proc)):
            if proc is not None and proc.poll() is not None:
                raise SweepStopped(f"{what} exited with code {proc.returncode}{self._log_tail(what)}", [])
        graph = self._graph
        if graph is not None and graph.last_clock_wall:
            with graph.lock:
                still = time.monotonic() - graph.last_clock_wall
            if still > self.options.service_timeout_s:
                raise SweepStopped(f"the sim arm is not answering: /clock stood still for {still:.0f} s of wall "
                                   f"time{self._log_tail('sim_arm')}", [])

    def _wait(self, predicate: Callable[[], bool], what: str, end: float) -> None:
        while not predicate():
            self._check_alive()
            if time.monotonic() > end:
                tails = self._log_tail("sim_arm") + self._log_tail("policy_node")
                raise SweepStopped(f"timed out waiting for {what}{tails}", [])
            time.sleep(0.05)

    def _call(self, client: Any, request: Any, what: str) -> Any:
        if not client.wait_for_service(timeout_sec=self.options.service_timeout_s):
            raise SweepStopped(f"{what}: service {client.srv_name} is not available{self._log_tail('sim_arm')}", [])
        future = client.call_async(request)
        end = time.monotonic() + self.options.service_timeout_s
        while not future.done():
            if time.monotonic() > end:
                client.remove_pending_request(future)
                raise SweepStopped(f"the sim arm or policy_node is not answering: {client.srv_name} gave no reply "
                                   f"to {what} within {self.options.service_timeout_s:g} s", [])
            self._check_alive()
            time.sleep(0.02)
        return future.result()

    # ------------------------------------------------------------------ one episode
    def _episode(self, job: dict[str, Any]) -> dict[str, Any]:
        graph = self._graph
        assert graph is not None
        ic = initial_condition_for(self.spec, self.config, job["cell"], job["episode"])
        pert = [Perturbation.from_mapping(p) for p in job["config"]["perturbations"]]
        self._call(graph.stop, Trigger.Request(), "hold before the reset")
        params = {"seed": int(ic.seed or 0), "place_object": True, "object_x": float(ic.x),
                  "object_y": float(ic.y), "object_yaw": float(ic.yaw),
                  "perturbation": pert[0].to_text() if pert else "", "horizon": self.horizon}
        reply = self._call(graph.set_params, SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in params.items()]), "episode parameters")
        refused = [f"{k}: {r.reason}" for k, r in zip(params, reply.results, strict=True) if not r.successful]
        if refused:
            raise SweepStopped(f"the sim arm refused episode parameters {refused}", [])
        reply = self._call(graph.reset, Trigger.Request(), "reset")
        if not reply.success:
            raise SweepStopped(f"the sim arm refused the reset: {reply.message}", [])
        episode = int(json.loads(reply.message)["episode"])
        end = time.monotonic() + self.options.service_timeout_s
        while True:  # fresh post-reset observations may take a moment to reach the node
            start = self._call(graph.start, Trigger.Request(), "start")
            if start.success:
                break
            if time.monotonic() > end:
                raise SweepStopped(f"policy_node would not start after the reset: {start.message}", [])
            time.sleep(0.1)
        # Sim time runs at most real_time_factor x wall time; ten times that, plus start-up slack.
        budget = 10.0 * self.horizon * self.dt / self.options.real_time_factor + 60.0
        self._wait(lambda: episode in graph.results, f"episode {episode}'s result", time.monotonic() + budget)
        with graph.lock:
            result = dict(graph.results[episode])
        self._call(graph.stop, Trigger.Request(), "hold after the episode")
        arm = result.pop("sim_arm")
        sim_ic = result["initial_condition"]
        if any(abs(float(sim_ic[k]) - float(getattr(ic, k))) > POSE_TOLERANCE for k in ("x", "y", "yaw")):
            raise SweepStopped(f"the sim arm placed the object at {sim_ic}, not at the sweep's {ic.to_dict()}", [])
        result["initial_condition"] = ic.to_dict()  # the same record as a direct sweep's (region, seed)
        self.episodes.append(self._stream_numbers(job, arm))
        return {"cell": job["cell"]["cell"], "episode": job["episode"], "result": result}

    def _stream_numbers(self, job: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
        """What the controller received during the episode (sim-time window of the sim arm's record)."""
        graph = self._graph
        assert graph is not None
        t0, t1 = float(arm["start_time_s"]), float(arm["end_time_s"])
        with graph.lock:
            trajs = [(s, w, m) for s, w, m in graph.trajs if t0 <= s <= t1 and len(m.points) > 1]  # not holds
            chunks = [(s, w, m) for s, w, m in graph.chunks if t0 <= s <= t1]
            clock = np.array(graph.clock_wall)
            graph.trajs = [x for x in graph.trajs if x[0] > t1]
            graph.chunks = [x for x in graph.chunks if x[0] > t1]
        lat_sim = obs_to_command_latencies([(s, m) for s, _, m in trajs], [(s, m) for s, _, m in chunks])
        lat_wall = np.array([])
        if clock.size and lat_sim.size:  # arrival (wall) - when the observation's sim time was on /clock (wall)
            obs_stamp = np.array([s for s, _, _ in trajs]) - lat_sim
            lat_wall = np.array([w for _, w, _ in trajs]) - np.interp(obs_stamp, clock[:, 0], clock[:, 1])
        executed, _ = executed_stream([(s, m) for s, _, m in trajs])
        executed = executed[(executed >= t0) & (executed <= t1)] if executed.size else executed
        return {
            "cell": job["cell"]["cell"], "episode": job["episode"], "sim_episode": arm["episode"],
            "ended": arm["ended"], "sim_s": round(t1 - t0, 3), "messages": len(trajs), "executed": int(executed.size),
            "previous_episode_commands": arm["previous_episode_commands"],
            "refused_commands_total": arm["refused_commands_total"],
            "_latency_sim_ms": (lat_sim * 1000).tolist(), "_latency_wall_ms": (lat_wall * 1000).tolist(),
        }


def ros_sweep(config: SweepConfig, real_time_factor: float | None = None,
              log_dir: Path | None = None) -> tuple[SweepConfig, RosSweepRunner]:
    """The CLI's entry: the same sweep config marked as run through ROS, and its runner (checked now)."""
    options = RosSweepOptions(log_dir=log_dir, **({} if real_time_factor is None
                                                  else {"real_time_factor": real_time_factor}))
    config = replace(config, backend=BACKEND, backend_options=options.config_options())
    config.validate()
    return config, RosSweepRunner(config, options)


def run_ros(jobs: list[dict[str, Any]], config: SweepConfig, progress: bool) -> list[dict[str, Any]]:
    """The ``ros`` entry of sweep_backends: options from ``config.backend_options`` (real_time_factor, log_dir)."""
    opts = dict(config.backend_options)
    options = RosSweepOptions(real_time_factor=float(opts.get("real_time_factor", 0.5)),
                              log_dir=Path(opts["log_dir"]) if opts.get("log_dir") else None)
    return RosSweepRunner(config, options).run(jobs, progress)
