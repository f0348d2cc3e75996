"""Spin one node on a single-threaded executor (in a background thread, or in ``main`` until a signal).

Why single-threaded: rclpy's Python ``MultiThreadedExecutor`` rebuilds its wait set on every
dispatch and completion, which on this project's 2-core machine cost a full core at 110 sensor
messages/s and starved every other Python thread (``bench/bench_ros_executor.py``: 1.01 CPU-s/s
and 12.9 % of messages received, against 0.15 and 97.9 % single-threaded). Work that must not wait
behind callbacks (policy inference, a record loop) runs in its own thread instead, and nodes
whose callbacks may block (the recorder's services) get a spin thread of their own.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from robot_offrl.errors import UserError

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


class StopSignals:
    """SIGINT/SIGTERM set an event instead of tearing the ROS context down.

    rclpy's own handlers shut the context down inside the signal handler, so by the time a node's
    ``finally`` runs its publishers are invalid and the hold it owes the controllers cannot be
    sent (``RCLError: publisher's context is invalid``). Init rclpy with
    ``signal_handler_options=SignalHandlerOptions.NO``, install this first, spin with
    :func:`spin_until`, then stop safely and shut down yourself.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.event = threading.Event()
        self.received: int | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        self.event.set()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else "none"

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def spin_until(executor: Any, stop: threading.Event, context: Any = None) -> None:
    """Spin on the calling thread until ``stop`` is set or the context shuts down.

    Python runs signal handlers between ``spin_once`` calls, so a signal is noticed within
    SPIN_PERIOD_S.
    """
    ctx = context if context is not None else executor.context
    try:
        while not stop.is_set() and ctx.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except ExternalShutdownException:
        pass


def run_node(
    name: str,
    make_node: Callable[[], Any],
    args: list[str] | None = None,
    on_stop: Callable[[Any, StopSignals], None] | None = None,
) -> int:
    """The console entry point every node of this package shares.

    rclpy's own signal handler would shut the context down before the node could act, so SIGINT and
    SIGTERM only end the spin here; ``on_stop`` then runs while ROS is still up (the policy node
    publishes its hold there), and only afterwards is ROS shut down: exit code 0. A node that
    refuses its parameters (a UserError) exits with one line naming the node, code 1.
    """
    stop = StopSignals()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = make_node()
    except UserError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        stop.restore()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until(executor, stop.event)
    finally:
        if on_stop is not None:
            on_stop(node, stop)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        stop.restore()
    return 0
