"""Helpers for tests/record (imported by name; never through conftest, whose name clashes across folders)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from robot_offrl.data import EpisodeStore
from robot_offrl.record.controls import ScriptedKeys, WaitSteps
from robot_offrl.record.session import RecordSession, SessionConfig
from robot_offrl_sim.teleop.devices import ScriptedDevice
from robot_offrl_sim.teleop.sim_backend import SimBackend

ENTER = "\n"


def sim_session(env: Any, device: ScriptedDevice, script: Sequence[Any], store_path: str, *,
                region: str = "narrow", seed: int = 0, **config: Any) -> tuple[RecordSession, EpisodeStore]:
    """A real record loop on a real Lift env, driven by a scripted device and scripted keys, unpaced."""
    backend = SimBackend(env, device, region=region, seed=seed, source=config.get("source", "teleop"))
    store = EpisodeStore.open(store_path, mode="a", schema=backend.schema())
    session = RecordSession(backend, store, SessionConfig(pace=False, **config), keys=ScriptedKeys(script),
                            out=io.StringIO())
    return session, store


def wiggle(seed: int) -> Any:
    """A deterministic, smooth 'operator': small random motions, gripper toggling now and then."""
    rng = np.random.default_rng(seed)

    def act(obs: Any) -> np.ndarray:
        a = rng.uniform(-0.3, 0.3, size=7)
        a[6] = 1.0 if rng.random() < 0.2 else -1.0
        return a.astype(np.float32)

    return act


def stamp_to_rgb(ms: int) -> tuple[int, int, int]:
    """A time stamp (ms since the publisher started) as a colour: uniform images survive crop + resize."""
    return (ms & 0xFF, (ms >> 8) & 0xFF, (ms >> 16) & 0xFF)


def rgb_to_stamp(img: np.ndarray) -> int:
    r, g, b = (int(v) for v in img[img.shape[0] // 2, img.shape[1] // 2])
    return r | (g << 8) | (b << 16)


class JitterPublisher:
    """A helper node playing arm, camera and leader arm: each topic from its own thread at 20-30 Hz
    with random jitter, every message carrying its own stamp in its payload so a test can read back
    which message each recorded step used."""

    JOINTS = [f"panda_joint{i}" for i in range(1, 8)]

    def __init__(self, ctx: Any, topics: dict[str, str], seed: int = 0) -> None:
        import rclpy

        from robot_offrl_ros.spinning import SpinThread

        self.ctx = ctx
        self.node = rclpy.create_node("record_test_publisher", context=ctx)
        self.t0 = self.node.get_clock().now().nanoseconds * 1e-9
        self.topics = topics
        self.enabled = {name: True for name in topics}
        self.rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pubs: dict[str, Any] = {}
        self._spinner = SpinThread(self.node, context=ctx)

    def start(self, rates: dict[str, float] | None = None) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState

        from robot_offrl_ros.qos import camera_qos

        rates = rates or {}
        kinds = {"joints": JointState, "camera": Image, "leader": JointState}
        for name, topic in self.topics.items():
            # Cameras publish reliably, as camera drivers do and as the recorder's default subscription needs.
            qos = camera_qos("reliable") if name == "camera" else qos_profile_sensor_data
            self._pubs[name] = self.node.create_publisher(kinds[name], topic, qos)
            hz = rates.get(name, float(self.rng.uniform(20.0, 30.0)))
            thread = threading.Thread(target=self._run, args=(name, hz), daemon=True)
            self._threads.append(thread)
            thread.start()

    def rel(self, stamp_s: float) -> float:
        return stamp_s - self.t0

    def _message(self, name: str) -> Any:
        from sensor_msgs.msg import JointState

        from robot_offrl_ros.image_codec import to_image_msg

        now = self.node.get_clock().now()
        rel = now.nanoseconds * 1e-9 - self.t0
        if name == "camera":
            img = np.empty((96, 128, 3), dtype=np.uint8)
            img[:] = stamp_to_rgb(int(round(rel * 1000)))
            return to_image_msg(img, "rgb8", stamp=now.to_msg())
        msg = JointState()
        msg.header.stamp = now.to_msg()
        # Reversed order with a finger joint: the recorder must match joints by name.
        names = self.JOINTS[::-1] + ["panda_finger_joint1"]
        base = 0.0 if name == "joints" else 100.0
        values = [base + rel + 0.001 * i for i in range(7)][::-1] + [0.04]
        msg.name, msg.position = names, values
        return msg

    def _run(self, name: str, hz: float) -> None:
        rng = np.random.default_rng(abs(hash(name)) % 2**32)
        while not self._stop.is_set():
            if self.enabled[name]:
                self._pubs[name].publish(self._message(name))
            # 20-30 Hz with +-30 % jitter on every interval.
            time.sleep(max(0.001, (1.0 / hz) * float(rng.uniform(0.7, 1.3))))

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._spinner.close()
        self.node.destroy_node()


__all__ = ["ENTER", "JitterPublisher", "WaitSteps", "rgb_to_stamp", "sim_session", "stamp_to_rgb", "wiggle"]
