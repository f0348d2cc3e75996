"""Spin one node on a single-threaded executor in a background thread.

Why single-threaded: rclpy's Python ``MultiThreadedExecutor`` rebuilds its wait set on every
dispatch and completion, which on this project's 2-core machine cost a full core at 110 sensor
messages/s and starved every other Python thread (``bench/bench_ros_executor.py``: 1.01 CPU-s/s
and 12.9 % of messages received, against 0.15 and 97.9 % single-threaded). Work that must not wait
behind callbacks (policy inference, a record loop) runs in its own thread instead, and nodes
whose callbacks may block (the recorder's services) get a spin thread of their own.
"""

from __future__ import annotations

import threading
from typing import Any

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

SPIN_PERIOD_S = 0.05  # how quickly a stop request is noticed


class SpinThread:
    """A daemon thread spinning ``node`` until :meth:`close`; the node is not destroyed here."""

    def __init__(self, node: Any, *, context: Any = None, name: str | None = None) -> None:
        self.node = node
        self._context = context if context is not None else node.context
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=name or f"spin-{node.get_name()}", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while not self._stop.is_set() and self._context.ok():
                self._executor.spin_once(timeout_sec=SPIN_PERIOD_S)
        except ExternalShutdownException:
            pass

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop spinning and release the executor; safe to call twice."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)
        self._executor.shutdown()
